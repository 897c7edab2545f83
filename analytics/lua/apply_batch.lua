-- Apply one batch of one site's events to its rollups, atomically.
-- See analytics/rollups.py for the key model; every key starts with the site's hash tag.
--
-- KEYS[1]  the site's meta hash ({s:<id>}:meta)
-- ARGV[1]  live key prefix ("{s:<id>}:")
-- ARGV[2]  batch id ("" when replaying for a rebuild: no marker)
-- ARGV[3]  marker TTL, seconds
-- ARGV[4]  now, epoch milliseconds (the caller's clock: expiries, live zset trimming)
-- ARGV[5]  complete_since to set when the site has none ("" to leave it)
-- ARGV[6]  JSON list of prepared events (analytics.rollups.PreparedEvent), sorted by (t, id)
-- ARGV[7]  mode: "live" (ingestion) or "rebuild" (replay into the rebuild namespace)
-- ARGV[8]  rebuild namespace prefix ("{s:<id>}:rb:")
-- ARGV[9]  rebuild replay: events at or after this epoch ms are de-duplicated against the
--          events ingestion wrote into the rebuild namespace meanwhile
--
-- Returns the batch result as JSON: {"st": [visit start ms per event], "rn": [[visitor,
-- old start, new start], ...], "nv": visits added (net), "now": visitors in the last 5 minutes,
-- "dup": 1 when the batch had been applied before}.

local meta = KEYS[1]
local live_ns = ARGV[1]
local batch = ARGV[2]
local marker_ttl = tonumber(ARGV[3])
local now_ms = tonumber(ARGV[4])
local complete_since = ARGV[5]
local events = cjson.decode(ARGV[6])
local mode = ARGV[7]
local rb_ns = ARGV[8]
local seen_cutoff = tonumber(ARGV[9])

local GAP = 1800000        -- more than 30 minutes between events starts a new visit
local KEEP = 88200000      -- 24 h 30 min: no later event can join a visit older than this
local SESS_SLACK = 3600000 -- an hour more for redelivered batches
local LIVE_WINDOW = 300    -- visitors now: last seen within 5 minutes

-- Dimensions recorded per event (pageviews, events, unique visitors per member).
local EVENT_DIMS = {"page", "hostname", "country", "browser", "browser_version", "os",
  "os_version", "device", "screen"}
-- Dimensions of a visit, taken from its entry event: visits, bounces, duration; the
-- acquisition dimensions also carry the visit's pageviews and events.
local VISIT_DIMS = {"entry_page", "exit_page", "source", "channel", "referrer", "utm_source",
  "utm_medium", "utm_campaign", "utm_content", "utm_term", "country", "browser",
  "browser_version", "os", "os_version", "device", "screen"}
local ACQUISITION = {source = true, channel = true, referrer = true, utm_source = true,
  utm_medium = true, utm_campaign = true, utm_content = true, utm_term = true}

local function apply(ns, evs, track, dedupe, cutoff)
  local touched = {}      -- key -> EXPIREAT epoch seconds
  local counters = {}     -- counter hashes touched (fields completed at the end)
  local states = {}       -- visitor -> list of visits
  local ev_visit = {}     -- event index -> visit table
  local renames = {}
  local net_visits = 0

  local function touch(key, expire_at)
    touched[key] = expire_at
  end

  local function zincr(key, member, delta, expire_at)
    if delta == 0 then return end
    local v = tonumber(redis.call('ZINCRBY', key, delta, member))
    if v == 0 then redis.call('ZREM', key, member) end
    touch(key, expire_at)
  end

  local function load(v)
    local st = states[v]
    if st then return st end
    local raw = redis.call('GET', ns .. 'sess:' .. v)
    st = {}
    if raw then
      for _, vis in ipairs(cjson.decode(raw)) do st[#st + 1] = vis end
    end
    states[v] = st
    return st
  end

  local function contrib(vis, sign)
    local b = 0
    if vis.ia <= 1 then b = 1 end
    local dur = math.floor((vis.e - vis.s) / 1000)
    local buckets = {{'m:' .. vis.m, vis.mx}, {'h:' .. vis.h, vis.hx}, {'d:' .. vis.d, vis.dx}}
    for _, bk in ipairs(buckets) do
      local key = ns .. bk[1]
      redis.call('HINCRBY', key, 'visits', sign)
      if b ~= 0 then redis.call('HINCRBY', key, 'bounces', sign * b) end
      if dur ~= 0 then redis.call('HINCRBY', key, 'duration', sign * dur) end
      counters[key] = true
      touch(key, bk[2])
    end
    for _, dim in ipairs(VISIT_DIMS) do
      local member
      if dim == 'entry_page' then member = vis.en
      elseif dim == 'exit_page' then member = vis.x
      else member = vis.a[dim] or '' end
      local prefix = ns .. 'top:' .. dim .. ':d:' .. vis.d .. ':'
      zincr(prefix .. 'visits', member, sign, vis.dx)
      if dim ~= 'exit_page' then
        zincr(prefix .. 'bounces', member, sign * b, vis.dx)
        zincr(prefix .. 'duration', member, sign * dur, vis.dx)
      end
      if ACQUISITION[dim] then
        zincr(prefix .. 'pageviews', member, sign * vis.pv, vis.dx)
        zincr(prefix .. 'events', member, sign * vis.ev, vis.dx)
      end
    end
  end

  local function later(t1, id1, t2, id2)
    return t1 > t2 or (t1 == t2 and id1 > id2)
  end

  local function sessionise(i, ev)
    local st = load(ev.v)
    local matches = {}
    for idx, vis in ipairs(st) do
      if ev.t >= vis.s - GAP and ev.t <= vis.e + GAP then matches[#matches + 1] = idx end
    end
    local ia = ev.ia
    local pv = 0
    if ev.k == 'p' then pv = 1 end
    if #matches == 0 then
      local vis = {s = ev.t, sid = ev.id, e = ev.t, m = ev.m, h = ev.h, d = ev.d, mx = ev.mx,
        hx = ev.hx, dx = ev.dx, en = ev.pg, a = ev.a, x = ev.pg, xt = ev.t, xid = ev.id,
        pv = pv, ev = 1, ia = ia}
      st[#st + 1] = vis
      contrib(vis, 1)
      net_visits = net_visits + 1
      ev_visit[i] = vis
      return
    end
    -- The earliest matching visit absorbs the others (the event bridges them) and the event.
    local target = st[matches[1]]
    for _, idx in ipairs(matches) do
      local vis = st[idx]
      if later(target.s, target.sid, vis.s, vis.sid) then target = vis end
    end
    for _, idx in ipairs(matches) do contrib(st[idx], -1) end
    local old_start = target.s
    local keep = {}
    for idx, vis in ipairs(st) do
      local merged = false
      for _, m in ipairs(matches) do
        if m == idx and vis ~= target then merged = true end
      end
      if merged then
        if vis.e > target.e then target.e = vis.e end
        if later(vis.xt, vis.xid, target.xt, target.xid) then
          target.x = vis.x; target.xt = vis.xt; target.xid = vis.xid
        end
        target.pv = target.pv + vis.pv
        target.ev = target.ev + vis.ev
        target.ia = target.ia + vis.ia
        vis.into = target
        renames[#renames + 1] = {ev.v, vis.s, target}
        net_visits = net_visits - 1
      else
        keep[#keep + 1] = vis
      end
    end
    if later(target.s, target.sid, ev.t, ev.id) then
      target.s = ev.t; target.sid = ev.id
      target.m = ev.m; target.h = ev.h; target.d = ev.d
      target.mx = ev.mx; target.hx = ev.hx; target.dx = ev.dx
      target.en = ev.pg; target.a = ev.a
    end
    if ev.t > target.e then target.e = ev.t end
    if later(ev.t, ev.id, target.xt, target.xid) then
      target.x = ev.pg; target.xt = ev.t; target.xid = ev.id
    end
    target.pv = target.pv + pv
    target.ev = target.ev + 1
    target.ia = target.ia + ia
    if target.s ~= old_start then renames[#renames + 1] = {ev.v, old_start, target} end
    contrib(target, 1)
    states[ev.v] = keep
    ev_visit[i] = target
  end

  local function count_event(ev)
    local pv = 0
    if ev.k == 'p' then pv = 1 end
    local buckets = {{'m:' .. ev.m, ev.mx}, {'h:' .. ev.h, ev.hx}, {'d:' .. ev.d, ev.dx}}
    for _, bk in ipairs(buckets) do
      local key = ns .. bk[1]
      if pv ~= 0 then redis.call('HINCRBY', key, 'pageviews', 1) end
      redis.call('HINCRBY', key, 'events', 1)
      counters[key] = true
      touch(key, bk[2])
    end
    local uv = {{'uv:m:' .. ev.m, ev.mx}, {'uv:h:' .. ev.h, ev.hx}, {'uv:d:' .. ev.d, ev.dx}}
    for _, bk in ipairs(uv) do
      redis.call('PFADD', ns .. bk[1], ev.v)
      touch(ns .. bk[1], bk[2])
    end
    local function member(dim, value, with_pv)
      local prefix = ns .. 'top:' .. dim .. ':d:' .. ev.d .. ':'
      if with_pv then zincr(prefix .. 'pageviews', value, pv, ev.dx) end
      zincr(prefix .. 'events', value, 1, ev.dx)
      local hll = ns .. 'uvm:' .. dim .. ':d:' .. ev.d .. ':' .. value
      redis.call('PFADD', hll, ev.v)
      touch(hll, ev.dx)
    end
    for _, dim in ipairs(EVENT_DIMS) do
      if dim == 'page' then member(dim, ev.pg, true)
      elseif dim == 'hostname' then member(dim, ev.host, true)
      else member(dim, ev.a[dim] or '', true) end
    end
    member('name', ev.n, false)
    for key, value in pairs(ev.pr) do member('props:' .. key, value, false) end
  end

  local function count_engagement(ev)
    local prefix = ns .. 'top:page:d:' .. ev.d .. ':'
    zincr(prefix .. 'engagements', ev.pg, 1, ev.dx)
    if ev.em ~= nil and ev.em ~= cjson.null then zincr(prefix .. 'time_ms', ev.pg, ev.em, ev.dx) end
    if ev.sd ~= nil and ev.sd ~= cjson.null then
      zincr(prefix .. 'scroll_sum', ev.pg, ev.sd, ev.dx)
      zincr(prefix .. 'scroll_n', ev.pg, 1, ev.dx)
    end
  end

  local seen = ns .. 'seen'
  for i, ev in ipairs(evs) do
    local fresh = true
    if dedupe and ev.t >= cutoff then
      fresh = redis.call('SADD', seen, ev.id) == 1
    end
    if fresh then
      if ev.k == 'e' then
        count_engagement(ev)
      else
        sessionise(i, ev)
        count_event(ev)
      end
    end
  end

  -- Every counter hash carries all five fields, whatever order its events came in.
  for key, _ in pairs(counters) do
    for _, field in ipairs({'pageviews', 'events', 'visits', 'bounces', 'duration'}) do
      redis.call('HSETNX', key, field, 0)
    end
  end

  -- Sessions: drop visits no event can join any more, store the rest.
  local starts = {}
  for v, st in pairs(states) do
    local newest = 0
    for _, vis in ipairs(st) do
      if vis.e > newest then newest = vis.e end
    end
    local keep = {}
    for _, vis in ipairs(st) do
      if vis.e >= newest - KEEP then keep[#keep + 1] = vis end
    end
    table.sort(keep, function(x, y) return x.s < y.s end)
    local key = ns .. 'sess:' .. v
    if #keep > 0 then
      redis.call('SET', key, cjson.encode(keep))
      if mode == 'live' then
        local ttl = newest + KEEP + SESS_SLACK - now_ms
        if ttl > 0 then redis.call('PEXPIRE', key, ttl) else redis.call('DEL', key) end
      end
    end
    states[v] = st
  end

  -- Expiry relative to the caller's clock (not the server's), so that replays and tests
  -- with a frozen clock agree with live ingestion.
  local now_s = math.floor(now_ms / 1000)
  for key, expire_at in pairs(touched) do
    if expire_at > now_s then redis.call('EXPIRE', key, expire_at - now_s) else redis.call('DEL', key) end
  end
  if mode == 'rebuild' or ns == rb_ns then
    local registry = rb_ns .. 'keys'
    for key, _ in pairs(touched) do redis.call('SADD', registry, key) end
    for v, _ in pairs(states) do redis.call('SADD', registry, ns .. 'sess:' .. v) end
  end

  if not track then return nil end

  for i, ev in ipairs(evs) do
    local vis = ev_visit[i]
    if vis then
      while vis.into do vis = vis.into end
      starts[i] = vis.s
    else
      -- An engagement event belongs to the visit around it, else to a visit of its own.
      local best = ev.t
      local best_dist = GAP + 1
      for _, cand in ipairs(states[ev.v] or load(ev.v)) do
        local dist = 0
        if ev.t < cand.s then dist = cand.s - ev.t elseif ev.t > cand.e then dist = ev.t - cand.e end
        if dist < best_dist then best = cand.s; best_dist = dist end
      end
      starts[i] = best
    end
  end
  local rn = {}
  for _, r in ipairs(renames) do
    local target = r[3]
    while target.into do target = target.into end
    if r[2] ~= target.s then rn[#rn + 1] = {r[1], r[2], target.s} end
  end
  return {starts = starts, renames = rn, net_visits = net_visits}
end

if mode == 'rebuild' then
  apply(rb_ns, events, false, true, seen_cutoff)
  return cjson.encode({nv = 0})
end

local marker = live_ns .. 'batch:' .. batch
local rebuilding = redis.call('HGET', meta, 'rebuilding') == '1'
local previous = redis.call('GET', marker)
if previous then
  -- A redelivered batch: the rollups have it; a rebuild running now may not.
  if rebuilding then apply(rb_ns, events, false, true, 0) end
  return previous
end

local res = apply(live_ns, events, true, false, 0)
if rebuilding then apply(rb_ns, events, false, true, 0) end
if complete_since ~= '' then redis.call('HSETNX', meta, 'complete_since', complete_since) end

local live = live_ns .. 'live'
local now_s = math.floor(now_ms / 1000)
for _, ev in ipairs(events) do
  if ev.k ~= 'e' then redis.call('ZADD', live, 'GT', math.floor(ev.t / 1000), ev.v) end
end
redis.call('ZREMRANGEBYSCORE', live, '-inf', now_s - LIVE_WINDOW - 1)
redis.call('EXPIRE', live, 3600)
local visitors_now = redis.call('ZCOUNT', live, now_s - LIVE_WINDOW, '+inf')

local st = {}
for i = 1, #events do st[i] = res.starts[i] or events[i].t end
local out = cjson.encode({st = st, rn = res.renames, nv = res.net_visits, now = visitors_now, dup = 0})
local stored = cjson.encode({st = st, rn = res.renames, nv = res.net_visits, now = visitors_now, dup = 1})
redis.call('SET', marker, stored, 'EX', marker_ttl)
return out

-- Apply one batch of one site's events to its rollups, atomically.
-- See analytics/ingest/rollups.py for the key model; every key starts with the site's hash tag.
--
-- KEYS[1]  the site's meta hash ({s:<id>}:meta)
-- ARGV[1]  live key prefix ("{s:<id>}:")
-- ARGV[2]  JSON list of the batch ids the events come from ("" when replaying for a rebuild:
--          no marker); each event's "b" is its batch's 1-based index in the list (default 1)
-- ARGV[3]  marker TTL, seconds
-- ARGV[4]  now, epoch milliseconds (the caller's clock: expiries, live zset trimming)
-- ARGV[5]  complete_since to set when the site has none ("" to leave it)
-- ARGV[6]  JSON list of prepared events (analytics.ingest.rollups.PreparedEvent), sorted by (t, id)
-- ARGV[7]  mode: "live" (ingestion) or "rebuild" (replay into the rebuild namespace)
-- ARGV[8]  rebuild namespace prefix ("{s:<id>}:rb:")
-- ARGV[9]  rebuild replay: events at or after this epoch ms are de-duplicated against the
--          events ingestion wrote into the rebuild namespace meanwhile
-- ARGV[10] the dimensions, as JSON (analytics.fields.ROLLUP_SPEC, from the field registry):
--          "event": [[dimension, source], ...] recorded per event (pageviews, events, unique
--          visitors per member), the member read from the prepared event's field ``source``,
--          or from its visit attributes ``a`` when the source is "a";
--          "visit": [[dimension, source], ...] of a visit, from its entry event (visits,
--          bounces, duration), the member its entry page ("en"), exit page ("x") or attribute
--          ("a"); "acquisition": the visit dimensions that also carry the visit's pageviews and
--          events; "name": the dimension of event names; "engagement": the dimension that
--          keeps engagement; "counters": the fields of every counter hash
--
-- Returns one result per batch, in the order of ARGV[2], each as JSON: {"sc": the visit start
-- of each event of the batch, in the batch's order, one character an event, and "sx" (see the
-- end of this script), "rn": [[visitor, old start, new start], ...],
-- "nv": visits added (net), "now": visitors in the last 5 minutes, "dup": 1 when the batch had
-- been applied before}. Each batch has its own marker holding its result, so a batch applied
-- here with others and delivered again alone, or with others, is applied once; the events of
-- the batches not seen before are applied together (one write per key and member).

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

local spec = cjson.decode(ARGV[10])
-- Each list as two flat arrays (dimension, source): the loops below run per event.
local EVENT_DIMS, EVENT_SRC, VISIT_DIMS, VISIT_SRC = {}, {}, {}, {}
for i, pair in ipairs(spec.event) do EVENT_DIMS[i] = pair[1]; EVENT_SRC[i] = pair[2] end
for i, pair in ipairs(spec.visit) do VISIT_DIMS[i] = pair[1]; VISIT_SRC[i] = pair[2] end
local N_EVENT, N_VISIT = #EVENT_DIMS, #VISIT_DIMS
local ACQUISITION = {}
for _, dim in ipairs(spec.acquisition) do ACQUISITION[dim] = true end
local NAME_DIM = spec.name
local ENGAGEMENT_DIM = spec.engagement
local COUNTER_FIELDS = spec.counters

local function apply(ns, evs, track, dedupe, cutoff)
  local touched = {}      -- key -> EXPIREAT epoch seconds
  local counters = {}     -- counter hashes touched (fields completed at the end)
  local states = {}       -- visitor -> list of visits
  local ev_visit = {}     -- event index -> visit table
  local renames = {}
  local net_visits = 0
  -- Changes are summed per key and member first and written once at the end: a visit that
  -- several events of the batch extend is undone and re-applied in these tables only.
  local hinc = {}         -- key -> field -> delta
  local zinc = {}         -- key -> member -> delta
  local pf = {}           -- key -> set of visitors

  local function touch(key, expire_at)
    touched[key] = expire_at
  end

  local function hincr(key, field, delta)
    local fields = hinc[key]
    if not fields then fields = {}; hinc[key] = fields end
    fields[field] = (fields[field] or 0) + delta
  end

  local function zincr(key, member, delta, expire_at)
    if delta == 0 then return end
    local members = zinc[key]
    if not members then members = {}; zinc[key] = members end
    members[member] = (members[member] or 0) + delta
    touch(key, expire_at)
  end

  local function pfadd(key, visitor, expire_at)
    local set = pf[key]
    if not set then set = {}; pf[key] = set end
    set[visitor] = true
    touch(key, expire_at)
  end

  -- Key names built once per batch: string building dominates the script's own time.
  -- top:<dim>:d:<day>:<metric>, by day then dimension then metric
  local tops = {}
  local function topkey(dim, day, metric)
    local t1 = tops[day]
    if not t1 then t1 = {}; tops[day] = t1 end
    local t2 = t1[dim]
    if not t2 then t2 = {}; t1[dim] = t2 end
    local key = t2[metric]
    if not key then key = ns .. 'top:' .. dim .. ':d:' .. day .. ':' .. metric; t2[metric] = key end
    return key
  end
  local uvms = {}
  local function uvmkey(dim, day, member)
    local t1 = uvms[day]
    if not t1 then t1 = {}; uvms[day] = t1 end
    local t2 = t1[dim]
    if not t2 then t2 = {}; t1[dim] = t2 end
    local key = t2[member]
    if not key then key = ns .. 'uvm:' .. dim .. ':d:' .. day .. ':' .. member; t2[member] = key end
    return key
  end
  local plain = {}
  local function key(kind, bucket)
    local t1 = plain[kind]
    if not t1 then t1 = {}; plain[kind] = t1 end
    local k = t1[bucket]
    if not k then k = ns .. kind .. bucket; t1[bucket] = k end
    return k
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

  -- A visit's bounce flag (at most one interactive event) and duration in seconds.
  local function bounce_duration(vis)
    local b = 0
    if vis.ia <= 1 then b = 1 end
    return b, math.floor((vis.e - vis.s) / 1000)
  end

  -- Visits, bounces and duration added to the minute, hour and day counters of a visit.
  -- Zero deltas are skipped (an extending event changes no visit count, often no bounce).
  local function visit_counters(vis, visits, bounces, duration)
    if visits == 0 and bounces == 0 and duration == 0 then return end
    local ks = {key('m:', vis.m), key('h:', vis.h), key('d:', vis.d)}
    local xs = {vis.mx, vis.hx, vis.dx}
    for n = 1, 3 do
      local k = ks[n]
      if visits ~= 0 then hincr(k, 'visits', visits) end
      if bounces ~= 0 then hincr(k, 'bounces', bounces) end
      if duration ~= 0 then hincr(k, 'duration', duration) end
      counters[k] = true
      touch(k, xs[n])
    end
  end

  local function contrib(vis, sign)
    local b, dur = bounce_duration(vis)
    visit_counters(vis, sign, sign * b, sign * dur)
    local day, dx = vis.d, vis.dx
    local bounces, duration, pageviews, events = sign * b, sign * dur, sign * vis.pv, sign * vis.ev
    local attrs = vis.a
    for n = 1, N_VISIT do
      local dim, source = VISIT_DIMS[n], VISIT_SRC[n]
      local member
      if source == 'a' then member = attrs[dim] or '' else member = vis[source] end
      zincr(topkey(dim, day, 'visits'), member, sign, dx)
      if source ~= 'x' then
        -- Zero deltas skipped before the key is looked up (most new visits: no duration yet).
        if bounces ~= 0 then zincr(topkey(dim, day, 'bounces'), member, bounces, dx) end
        if duration ~= 0 then zincr(topkey(dim, day, 'duration'), member, duration, dx) end
      end
      if ACQUISITION[dim] then
        if pageviews ~= 0 then zincr(topkey(dim, day, 'pageviews'), member, pageviews, dx) end
        zincr(topkey(dim, day, 'events'), member, events, dx)
      end
    end
  end

  -- The change to a visit's contribution when an event extends it without moving its start
  -- (the common case): the same as contrib(before, -1) then contrib(after, 1), without
  -- touching the members and metrics that do not change. ``before`` holds the visit's exit
  -- page, bounce flag, duration and pageview and event counts before the event.
  local function contrib_change(vis, before)
    local b, dur = bounce_duration(vis)
    local db, ddur = b - before.b, dur - before.dur
    local dpv, dev = vis.pv - before.pv, vis.ev - before.ev
    visit_counters(vis, 0, db, ddur)
    local day, dx = vis.d, vis.dx
    if before.x ~= vis.x then
      for n = 1, N_VISIT do
        if VISIT_SRC[n] == 'x' then
          zincr(topkey(VISIT_DIMS[n], day, 'visits'), before.x, -1, dx)
          zincr(topkey(VISIT_DIMS[n], day, 'visits'), vis.x, 1, dx)
        end
      end
    end
    -- Zero deltas are skipped before their keys are looked up: this runs for most events.
    local visit_change = db ~= 0 or ddur ~= 0
    if not visit_change and dpv == 0 and dev == 0 then return end
    local attrs = vis.a
    for n = 1, N_VISIT do
      local dim, source = VISIT_DIMS[n], VISIT_SRC[n]
      local acquisition = ACQUISITION[dim]
      if source ~= 'x' and (visit_change or acquisition) then
        local member
        if source == 'a' then member = attrs[dim] or '' else member = vis[source] end
        if db ~= 0 then zincr(topkey(dim, day, 'bounces'), member, db, dx) end
        if ddur ~= 0 then zincr(topkey(dim, day, 'duration'), member, ddur, dx) end
        if acquisition then
          if dpv ~= 0 then zincr(topkey(dim, day, 'pageviews'), member, dpv, dx) end
          if dev ~= 0 then zincr(topkey(dim, day, 'events'), member, dev, dx) end
        end
      end
    end
  end

  local function later(t1, id1, t2, id2)
    return t1 > t2 or (t1 == t2 and id1 > id2)
  end

  -- The event's part of a visit it belongs to: the end, the exit page and the counts.
  local function extend(vis, ev, pv, ia)
    if ev.t > vis.e then vis.e = ev.t end
    if later(ev.t, ev.id, vis.xt, vis.xid) then
      vis.x = ev.pg; vis.xt = ev.t; vis.xid = ev.id
    end
    vis.pv = vis.pv + pv
    vis.ev = vis.ev + 1
    vis.ia = vis.ia + ia
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
    if #matches == 1 then
      local target = st[matches[1]]
      if later(ev.t, ev.id, target.s, target.sid) then
        -- The event joins one visit after its start: only the visit's end, exit, counts and
        -- bounce change.
        local before = {x = target.x, pv = target.pv, ev = target.ev}
        before.b, before.dur = bounce_duration(target)
        extend(target, ev, pv, ia)
        contrib_change(target, before)
        ev_visit[i] = target
        return
      end
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
    extend(target, ev, pv, ia)
    if target.s ~= old_start then renames[#renames + 1] = {ev.v, old_start, target} end
    contrib(target, 1)
    states[ev.v] = keep
    ev_visit[i] = target
  end

  local function count_event(ev)
    local pv = 0
    if ev.k == 'p' then pv = 1 end
    local ks = {key('m:', ev.m), key('h:', ev.h), key('d:', ev.d)}
    local xs = {ev.mx, ev.hx, ev.dx}
    for n = 1, 3 do
      local k = ks[n]
      hincr(k, 'pageviews', pv)
      hincr(k, 'events', 1)
      counters[k] = true
      touch(k, xs[n])
    end
    pfadd(key('uv:m:', ev.m), ev.v, ev.mx)
    pfadd(key('uv:h:', ev.h), ev.v, ev.hx)
    pfadd(key('uv:d:', ev.d), ev.v, ev.dx)
    local day, dx, visitor = ev.d, ev.dx, ev.v
    local attrs = ev.a
    for n = 1, N_EVENT do
      local dim, source = EVENT_DIMS[n], EVENT_SRC[n]
      local value
      if source == 'a' then value = attrs[dim] or '' else value = ev[source] end
      zincr(topkey(dim, day, 'pageviews'), value, pv, dx)
      zincr(topkey(dim, day, 'events'), value, 1, dx)
      pfadd(uvmkey(dim, day, value), visitor, dx)
    end
    zincr(topkey(NAME_DIM, day, 'events'), ev.n, 1, dx)
    pfadd(uvmkey(NAME_DIM, day, ev.n), visitor, dx)
    for prop, value in pairs(ev.pr) do
      local dim = 'props:' .. prop
      zincr(topkey(dim, day, 'events'), value, 1, dx)
      pfadd(uvmkey(dim, day, value), visitor, dx)
    end
  end

  local function count_engagement(ev)
    local dim = ENGAGEMENT_DIM
    zincr(topkey(dim, ev.d, 'engagements'), ev.pg, 1, ev.dx)
    if ev.em ~= nil and ev.em ~= cjson.null then zincr(topkey(dim, ev.d, 'time_ms'), ev.pg, ev.em, ev.dx) end
    if ev.sd ~= nil and ev.sd ~= cjson.null then
      zincr(topkey(dim, ev.d, 'scroll_sum'), ev.pg, ev.sd, ev.dx)
      zincr(topkey(dim, ev.d, 'scroll_n'), ev.pg, 1, ev.dx)
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

  for key, fields in pairs(hinc) do
    for name, delta in pairs(fields) do
      if delta ~= 0 then redis.call('HINCRBY', key, name, delta) end
    end
  end
  for key, members in pairs(zinc) do
    for member, delta in pairs(members) do
      if delta ~= 0 then
        if tonumber(redis.call('ZINCRBY', key, delta, member)) == 0 then redis.call('ZREM', key, member) end
      end
    end
  end
  for key, set in pairs(pf) do
    local visitors = {}
    for visitor, _ in pairs(set) do
      visitors[#visitors + 1] = visitor
      if #visitors == 500 then redis.call('PFADD', key, unpack(visitors)); visitors = {} end
    end
    if #visitors > 0 then redis.call('PFADD', key, unpack(visitors)) end
  end
  -- Every counter hash carries all five fields, whatever order its events came in.
  for key, _ in pairs(counters) do
    for _, field in ipairs(COUNTER_FIELDS) do
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

local ids = cjson.decode(batch)
local rebuilding = redis.call('HGET', meta, 'rebuilding') == '1'
local previous = {}
local fresh = {}
for k, id in ipairs(ids) do
  local stored = redis.call('GET', live_ns .. 'batch:' .. id)
  if stored then previous[k] = stored else fresh[k] = true end
end
local new_events, old_events = {}, {}
for _, ev in ipairs(events) do
  if fresh[ev.b or 1] then new_events[#new_events + 1] = ev else old_events[#old_events + 1] = ev end
end
-- Redelivered batches: the rollups have them; a rebuild running now may not.
if rebuilding and #old_events > 0 then apply(rb_ns, old_events, false, true, 0) end
if next(fresh) == nil then return previous end

local res = apply(live_ns, new_events, true, false, 0)
if rebuilding then apply(rb_ns, new_events, false, true, 0) end
if complete_since ~= '' then redis.call('HSETNX', meta, 'complete_since', complete_since) end

local live = live_ns .. 'live'
local now_s = math.floor(now_ms / 1000)
local last_seen = {}
for _, ev in ipairs(new_events) do
  if ev.k ~= 'e' then
    local seen_at = math.floor(ev.t / 1000)
    if (last_seen[ev.v] or 0) < seen_at then last_seen[ev.v] = seen_at end
  end
end
local pairs_list = {}
for visitor, seen_at in pairs(last_seen) do
  pairs_list[#pairs_list + 1] = seen_at
  pairs_list[#pairs_list + 1] = visitor
  if #pairs_list >= 1000 then redis.call('ZADD', live, 'GT', unpack(pairs_list)); pairs_list = {} end
end
if #pairs_list > 0 then redis.call('ZADD', live, 'GT', unpack(pairs_list)) end
redis.call('ZREMRANGEBYSCORE', live, '-inf', now_s - LIVE_WINDOW - 1)
redis.call('EXPIRE', live, 3600)
local visitors_now = redis.call('ZCOUNT', live, now_s - LIVE_WINDOW, '+inf')

-- Each batch's visit starts, one character per event (the marker holds them 48 h, so a byte
-- an event matters): "n" the event's own time, "s" the start of the visitor's previous event
-- in the batch, "x" the event's time minus the next number of the batch's "sx" list.
local codes, offsets, previous_start = {}, {}, {}
for i, ev in ipairs(new_events) do
  local k = ev.b or 1
  local c = codes[k]
  if not c then c = {}; codes[k] = c; offsets[k] = {}; previous_start[k] = {} end
  local start = res.starts[i] or ev.t
  local prev = previous_start[k]
  if start == ev.t then
    c[#c + 1] = 'n'
  elseif prev[ev.v] == start then
    c[#c + 1] = 's'
  else
    c[#c + 1] = 'x'
    local xs = offsets[k]
    xs[#xs + 1] = ev.t - start
  end
  prev[ev.v] = start
end
-- The group's renames and new visits go with its first new batch (a replay of the others
-- alone then adds nothing twice to the live delta).
local out = {}
local first = true
for k, id in ipairs(ids) do
  if fresh[k] then
    local rn, nv = {}, 0
    if first then rn = res.renames; nv = res.net_visits; first = false end
    local sx = offsets[k] or {}
    -- cjson writes an empty table as an object: no list then, which the reader takes as [].
    if #sx == 0 then sx = nil end
    local result = {sc = table.concat(codes[k] or {}), sx = sx, rn = rn, nv = nv, now = visitors_now, dup = 0}
    out[k] = cjson.encode(result)
    result.dup = 1
    redis.call('SET', live_ns .. 'batch:' .. id, cjson.encode(result), 'EX', marker_ttl)
  else
    out[k] = previous[k]
  end
end
return out

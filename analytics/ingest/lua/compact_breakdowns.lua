-- Move a closed day's breakdowns (sorted sets) into one compact string per dimension, atomically.
-- See analytics/ingest/compact.py.
--
-- KEYS[1]  the site's meta hash (routing only; every key shares its hash tag)
-- ARGV[1]  the site's key prefix ("{s:<id>}:")
-- ARGV[2]  the day (YYYYMMDD)
-- ARGV[3]  JSON object dimension -> [metric, ...]: the sorted sets to move
--
-- Each dimension's sorted sets top:<dim>:d:<day>:<metric> are added into the string
-- topc:<dim>:d:<day> ({"m": [member, ...], "<metric>": [value per member, ...]}, members whose
-- every value is 0 left out) and deleted; the string expires when the latest of them would
-- have. A late event after the move writes a new sorted set, which readers add to the string,
-- and which the next compaction moves in too. Returns the number of sorted sets moved.

-- A site being rebuilt is left alone: the rebuild's swap drops the live keys it listed before,
-- and a string written after that listing would stay beside the rebuilt sorted sets.
if redis.call('HGET', KEYS[1], 'rebuilding') == '1' then return 0 end
local prefix, day = ARGV[1], ARGV[2]
local dims = cjson.decode(ARGV[3])
local moved = 0
for dim, metrics in pairs(dims) do
  local target = prefix .. 'topc:' .. dim .. ':d:' .. day
  local values = {}     -- member -> metric -> value
  local order = {}      -- members in order of first sight
  local names = {}      -- metrics present
  local expire_ms = redis.call('PTTL', target)
  local existing = redis.call('GET', target)
  local function add(member, metric, value)
    local row = values[member]
    if not row then row = {}; values[member] = row; order[#order + 1] = member end
    row[metric] = (row[metric] or 0) + value
    names[metric] = true
  end
  if existing then
    local data = cjson.decode(existing)
    for metric, list in pairs(data) do
      if metric ~= 'm' then
        for i, member in ipairs(data.m) do add(member, metric, list[i]) end
      end
    end
  end
  local sources = {}
  for _, metric in ipairs(metrics) do
    local key = prefix .. 'top:' .. dim .. ':d:' .. day .. ':' .. metric
    local flat = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
    if #flat > 0 then
      for i = 1, #flat, 2 do add(flat[i], metric, tonumber(flat[i + 1])) end
      local ttl = redis.call('PTTL', key)
      if ttl > expire_ms then expire_ms = ttl end
      sources[#sources + 1] = key
    end
  end
  if #sources > 0 then
    local out = {m = {}}
    for metric, _ in pairs(names) do out[metric] = {} end
    for _, member in ipairs(order) do
      local row = values[member]
      local any = false
      for _, value in pairs(row) do if value ~= 0 then any = true end end
      if any then
        out.m[#out.m + 1] = member
        for metric, _ in pairs(names) do
          local list = out[metric]
          list[#list + 1] = row[metric] or 0
        end
      end
    end
    if #out.m > 0 then
      redis.call('SET', target, cjson.encode(out))
      if expire_ms > 0 then redis.call('PEXPIRE', target, expire_ms) end
    else
      redis.call('DEL', target)
    end
    redis.call('DEL', unpack(sources))
    moved = moved + #sources
  end
end
return moved

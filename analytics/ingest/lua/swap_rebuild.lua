-- Replace a site's rollups by the rebuilt ones, atomically.
-- KEYS[1] the site's meta hash
-- ARGV[1] rebuild token  ARGV[2] live prefix  ARGV[3] rebuild prefix  ARGV[4] complete_since
-- ARGV[5..] live rollup keys to drop (found by SCAN before; keys created since are also
--           in the rebuild namespace, whose copy replaces them)
if redis.call('HGET', KEYS[1], 'rebuild_token') ~= ARGV[1] then return -1 end
local live, rb = ARGV[2], ARGV[3]
for i = 5, #ARGV do redis.call('UNLINK', ARGV[i]) end
local moved = 0
for _, key in ipairs(redis.call('SMEMBERS', rb .. 'keys')) do
  if redis.call('EXISTS', key) == 1 then
    redis.call('RENAME', key, live .. string.sub(key, #rb + 1))
    moved = moved + 1
  end
end
redis.call('UNLINK', rb .. 'keys', rb .. 'seen')
redis.call('HSET', KEYS[1], 'complete_since', ARGV[4])
-- The rebuilt days are not compacted (analytics/ingest/compact.py): the next compaction starts over.
redis.call('HDEL', KEYS[1], 'rebuilding', 'rebuild_token', 'rebuild_started', 'compacted_until')
return moved

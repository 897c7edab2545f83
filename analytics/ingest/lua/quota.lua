-- Count a batch's events against an account's monthly quota, once per batch.
-- KEYS[1] {a:<id>}:quota:<yyyymm>   KEYS[2] {a:<id>}:qb:<batch_id>:<yyyymm>
-- ARGV[1] events   ARGV[2] marker TTL seconds   ARGV[3] quota key TTL seconds
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2]) then
  local total = redis.call('INCRBY', KEYS[1], ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  return total
end
return tonumber(redis.call('GET', KEYS[1]) or '0')

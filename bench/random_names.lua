-- wrk: GET /user/<a random name from $BENCH_NAMES> (one percent-encoded name per line).
local names = {}
for line in io.lines(os.getenv("BENCH_NAMES")) do
  names[#names + 1] = line
end
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))

request = function()
  return wrk.format("GET", "/user/" .. names[math.random(#names)])
end

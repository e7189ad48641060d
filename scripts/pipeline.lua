-- wrk script: HTTP/1.1 pipelining of the URL's path, used by scripts/bench.sh and compare.sh.
-- Each write carries DEPTH requests (default 16, env PIPELINE_DEPTH); wrk counts
-- requests from the responses it parses, so requests/s counts every pipelined request.
-- Latency, though, is recorded once per batch (first request sent -> last response read).
local depth = tonumber(os.getenv("PIPELINE_DEPTH") or "16")
local batch

init = function(args)
   local r = {}
   for i = 1, depth do
      r[i] = wrk.format(nil, wrk.path)
   end
   batch = table.concat(r)
end

request = function()
   return batch
end

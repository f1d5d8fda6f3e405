-- wrk script: every request carries another token, read from the file args[1] (one a
-- line), in order; past the end it starts again (the report counts requests against the
-- tokens, so a wrap shows).
local tokens = {}
local next_token = 0
-- done() (the JSON line) is report.lua's, beside this file; loaded at the top, since
-- wrk calls done() in a Lua state where init() never ran.
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "report.lua")
init = function(args)
  for line in io.lines(args[1]) do
    tokens[#tokens + 1] = "Bearer " .. line
  end
end
request = function()
  next_token = next_token % #tokens + 1
  wrk.headers["Authorization"] = tokens[next_token]
  return wrk.format()
end

-- wrk script: every request POSTs a body of args[1] bytes (10 MiB by default).
-- done() (the JSON line) is report.lua's, beside this file; loaded at the top, since
-- wrk calls done() in a Lua state where init() never ran.
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "report.lua")
init = function(args)
  local size = tonumber(args[1] or "10485760")
  wrk.method = "POST"
  wrk.body = string.rep("x", size)
  wrk.headers["Content-Type"] = "application/octet-stream"
end

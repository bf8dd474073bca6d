-- wrk script for the serving benchmark: POST the body in the file $WRK_BODY_FILE, with the
-- content type $WRK_CONTENT_TYPE (default application/json) and the extra headers in
-- $WRK_HEADERS ("Name: value" lines).
--   WRK_BODY_FILE=body.json wrk -s bench/post_body.lua -t2 -c64 -d20s --latency URL
local path = os.getenv("WRK_BODY_FILE")
assert(path, "set WRK_BODY_FILE to the file holding the request body")
local file = assert(io.open(path, "rb"))
wrk.method = "POST"
wrk.headers["Content-Type"] = os.getenv("WRK_CONTENT_TYPE") or "application/json"
for line in (os.getenv("WRK_HEADERS") or ""):gmatch("[^\n]+") do
  local name, value = line:match("^([^:]+):%s*(.*)$")
  if name then wrk.headers[name] = value end
end
wrk.body = file:read("*a")
file:close()

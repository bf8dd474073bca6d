-- wrk script for the serving benchmark: POST the JSON body in the file $WRK_BODY_FILE.
--   WRK_BODY_FILE=body.json wrk -s bench/post_body.lua -t2 -c64 -d20s --latency URL
local path = os.getenv("WRK_BODY_FILE")
assert(path, "set WRK_BODY_FILE to the file holding the request body")
local file = assert(io.open(path, "rb"))
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = file:read("*a")
file:close()

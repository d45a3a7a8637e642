-- wrk script of bench/serve/run.sh: POSTs the JSON body in the file named by
-- $WRK_BODY (one or 32 real Adult records) to the URL given to wrk.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local path = os.getenv("WRK_BODY")
local f = assert(io.open(path, "rb"), "WRK_BODY: cannot open " .. tostring(path))
wrk.body = f:read("*a")
f:close()

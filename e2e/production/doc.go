// Package production holds no code: its test runs docker-compose.yml's
// production topology as processes on simulated hosts (internal/fleettest),
// with the fleet deployment target: PostgreSQL and the official Temporal
// server, an S3 store, the worker (--deploy-target fleet), a `gauntlet
// router` and two `gauntlet serve` model servers that outlive it, and a
// real Prometheus scraping them. A client sends predictions to the router
// throughout while pipeline runs canary good and failing candidates, the
// worker is killed in the middle of a canary, and drift makes the monitor
// roll production back and retrain.
package production

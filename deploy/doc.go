// Package deploy holds no code: its tests check the deployment files
// (Prometheus config and rules, Grafana dashboards, docker-compose.yml,
// Dockerfile) against each other and against the metrics the code exports.
package deploy

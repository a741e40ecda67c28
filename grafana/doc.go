// Package grafana holds DevOpstic's Grafana provisioning (provisioning/) and dashboards
// (dashboards/). Its test checks the dashboards with Grafana's own Go types; the test in
// services/devopstic runs every panel's SQL and compares it with the metrics API.
package grafana

// Package grafana holds DevOpstic's Grafana provisioning (provisioning/) and dashboards
// (dashboards/), alert rules included (provisioning/alerting). Its tests check the dashboards,
// their annotations and the alert rules with Grafana's own Go types; the tests in
// services/devopstic run every panel's, annotation's and alert rule's SQL and compare it with the
// metrics API.
package grafana

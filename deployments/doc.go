// Package deployments holds no code: it is where DevOpstic's deployment artifacts live and where
// their tests run (deployments_test.go), as part of `make test`.
//
//   - docker-compose.yml and .env.example at the repository root, checked with docker-compose
//     (`docker-compose config`, Debian's 1.29; Compose v2 too where it is installed);
//   - docker/: the images' Dockerfile, their entry point and compose's secrets generator;
//   - kubernetes/devopstic: the Helm chart, checked with helm v3.22.0 (`helm lint`, `helm template`);
//   - nats/: the 3-node JetStream cluster configuration, parsed by nats-server and started;
//   - postgres/: the read-only role Grafana uses, applied to a real Postgres.
//
// `make tools` installs helm and docker-compose; a test whose tool is missing fails and says so.
package deployments

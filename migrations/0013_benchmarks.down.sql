DROP FUNCTION IF EXISTS dora_recovery_time_tier(text, double precision);
DROP FUNCTION IF EXISTS dora_change_failure_rate_tier(text, bigint, bigint);
DROP FUNCTION IF EXISTS dora_lead_time_tier(text, double precision);
DROP FUNCTION IF EXISTS dora_deployment_frequency_tier(text, bigint, timestamptz, timestamptz);
DROP FUNCTION IF EXISTS dora_benchmark_bounds(text);
DROP TABLE IF EXISTS dora_benchmark_tiers;
DROP TABLE IF EXISTS dora_benchmarks;

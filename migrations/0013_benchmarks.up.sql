-- DORA's benchmarks, kept as data (issue 16): each set of tier bounds with the report it comes
-- from. GET /api/v1/metrics/dora (?benchmark=, pkg/dora), the first page and the Grafana
-- dashboards (their benchmark variable and the dora_*_tier functions below) all read these rows,
-- so there is one copy of the numbers. docs/metrics.md ("Benchmarks") has the tables per year,
-- where each number comes from, and the rating rule.
--
-- The rule: a metric is rated at the best tier whose bound it meets, each tier's bound taken as
-- the report publishes it; a value that meets none is low. Low has no row: it is whatever meets
-- no better bound, so the low row of a report (whatever it says) never decides a rating. The
-- bounds need not be monotonic: in 2024 the medium cluster's change failure rate (10%) is better
-- than the high cluster's (20%), so on change failure rate alone a value that meets medium's
-- bound meets high's too and is rated high (docs/metrics.md says why that is the honest reading).
--
-- The default set is the newest report (report_year). Configuration, not facts of the stream: a
-- rebuild or a replay leaves these tables as they are. In schema public: Grafana's read-only
-- role reads them for the dashboards.

CREATE TABLE dora_benchmarks (
    -- What ?benchmark= and the dashboards' variable take: the report's year.
    benchmark    text    PRIMARY KEY CHECK (benchmark ~ '^[0-9]{4}$'),
    -- The answer's tier_source.
    label        text    NOT NULL UNIQUE CHECK (label <> ''),
    report_year  integer NOT NULL UNIQUE,
    report_title text    NOT NULL CHECK (report_title <> ''),
    report_url   text    NOT NULL CHECK (report_url ~ '^https://'),
    -- Where in the report the numbers are, and how they were read.
    source_note  text    NOT NULL CHECK (source_note <> '')
);

-- One row per tier better than low, per benchmark: the bound a value must meet for that tier.
CREATE TABLE dora_benchmark_tiers (
    benchmark text     NOT NULL REFERENCES dora_benchmarks ON DELETE CASCADE,
    tier      text     NOT NULL CHECK (tier IN ('elite', 'high', 'medium')),
    -- Best first: the order in which a value is tried against the bounds.
    rank      smallint NOT NULL GENERATED ALWAYS AS (CASE tier WHEN 'elite' THEN 1 WHEN 'high' THEN 2 ELSE 3 END) STORED,
    -- Deployment frequency: at least deploys_at_least successful deployments per deploys_per_days
    -- days (1 per 7 days rather than 0.142857…: the comparison stays exact).
    deploys_at_least            integer NOT NULL CHECK (deploys_at_least > 0),
    deploys_per_days            integer NOT NULL CHECK (deploys_per_days > 0),
    -- Lead time for changes (median): strictly below.
    lead_time_below_seconds     bigint  NOT NULL CHECK (lead_time_below_seconds > 0),
    -- Change failure rate: at most, a fraction (0.05 is 5%).
    change_failure_rate_at_most numeric NOT NULL CHECK (change_failure_rate_at_most BETWEEN 0 AND 1),
    -- Failed deployment recovery time (median): strictly below.
    recovery_below_seconds      bigint  NOT NULL CHECK (recovery_below_seconds > 0),
    PRIMARY KEY (benchmark, tier)
);

INSERT INTO dora_benchmarks (benchmark, label, report_year, report_title, report_url, source_note) VALUES
('2023', 'DORA 2023', 2023, 'Accelerate State of DevOps Report 2023', 'https://dora.dev/research/2023/dora-report/',
 'DORA.md''s tiers table ("DORA 2023", the project''s contract), read from the report''s software delivery performance '
 'levels (chapter "How do you compare?"): its elite, high and medium rows, a month read as 30 days and "on demand" as at '
 'least once a day. The report''s low row (the same deployment frequency and lead time as medium, 64%, one to six months '
 'to recover) is not kept: low is whatever meets no better bound.'),
('2024', 'DORA 2024', 2024, 'Accelerate State of DevOps Report 2024', 'https://dora.dev/research/2024/dora-report/',
 'The report''s software delivery performance levels (p. 13): the elite, high and medium rows as published, read as DORA.md '
 'reads 2023''s (a month is 30 days, "on demand" at least once a day, a range''s slower end its bound). Not monotonic: '
 'medium''s change failure rate (10%) is below high''s (20%), and medium recovers in less than a day as high does. '
 'The low row (once a month to once every six months, one to six months, 40%, one week to one month) is not kept.');

INSERT INTO dora_benchmark_tiers (benchmark, tier, deploys_at_least, deploys_per_days, lead_time_below_seconds,
                                  change_failure_rate_at_most, recovery_below_seconds) VALUES
-- DORA 2023 (DORA.md): per_day ≥ 1, < 1 day, ≤ 5%, < 1 hour | per_week ≥ 1, < 1 week, ≤ 10%, < 1 day |
-- ≥ 1 per 30 days, < 30 days, ≤ 15%, < 1 week.
('2023', 'elite',  1,  1,   86400, 0.05,   3600),
('2023', 'high',   1,  7,  604800, 0.10,  86400),
('2023', 'medium', 1, 30, 2592000, 0.15, 604800),
-- DORA 2024: on demand, < 1 day, 5%, < 1 hour | once a day to once a week, one day to one week, 20%,
-- < 1 day | once a week to once a month, one week to one month, 10%, < 1 day.
('2024', 'elite',  1,  1,   86400, 0.05,   3600),
('2024', 'high',   1,  7,  604800, 0.20,  86400),
('2024', 'medium', 1, 30, 2592000, 0.10,  86400);

-- The bounds of a benchmark, best tier first. An unknown benchmark is an error, not an empty set
-- that would rate every value low.
CREATE FUNCTION dora_benchmark_bounds(p_benchmark text)
RETURNS SETOF dora_benchmark_tiers
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
BEGIN
    RETURN QUERY SELECT * FROM dora_benchmark_tiers WHERE benchmark = p_benchmark ORDER BY rank;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown DORA benchmark %', quote_nullable(p_benchmark)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'SELECT benchmark FROM dora_benchmarks lists them';
    END IF;
END
$$;

-- The tiers, rated as pkg/dora rates them (a test holds the two to the same answers on every
-- bound of every benchmark). Each takes the figures dora_deployments, dora_lead_time and
-- dora_time_to_restore return; none rounds.

-- Deployment frequency: p_deployments successful deployments in [p_from, p_to). None is low.
CREATE FUNCTION dora_deployment_frequency_tier(p_benchmark text, p_deployments bigint, p_from timestamptz, p_to timestamptz)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce((
        SELECT b.tier FROM dora_benchmark_bounds(p_benchmark) b
        WHERE p_deployments::numeric * b.deploys_per_days * 86400
              >= b.deploys_at_least * (extract(epoch FROM p_to) - extract(epoch FROM p_from))
        ORDER BY b.rank LIMIT 1), 'low')
$$;

-- Lead time for changes, on the median before rounding (dora_lead_time's median_exact); NULL
-- without changes.
CREATE FUNCTION dora_lead_time_tier(p_benchmark text, p_median double precision)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN p_median IS NOT NULL THEN coalesce((
        SELECT b.tier FROM dora_benchmark_bounds(p_benchmark) b
        WHERE p_median < b.lead_time_below_seconds
        ORDER BY b.rank LIMIT 1), 'low') END
$$;

-- Change failure rate: p_failed of p_attempts, exactly (not the rate rounded to 4 decimals);
-- NULL without attempts.
CREATE FUNCTION dora_change_failure_rate_tier(p_benchmark text, p_failed bigint, p_attempts bigint)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN p_attempts > 0 THEN coalesce((
        SELECT b.tier FROM dora_benchmark_bounds(p_benchmark) b
        WHERE p_failed <= b.change_failure_rate_at_most * p_attempts
        ORDER BY b.rank LIMIT 1), 'low') END
$$;

-- Failed deployment recovery time, on the median before rounding (dora_time_to_restore's
-- median_exact); NULL without incidents resolved.
CREATE FUNCTION dora_recovery_time_tier(p_benchmark text, p_median double precision)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN p_median IS NOT NULL THEN coalesce((
        SELECT b.tier FROM dora_benchmark_bounds(p_benchmark) b
        WHERE p_median < b.recovery_below_seconds
        ORDER BY b.rank LIMIT 1), 'low') END
$$;

-- Views over one snapshot folder of the data lake export ({lake} is its path).
CREATE OR REPLACE VIEW events AS
    SELECT * FROM read_parquet('{lake}/events/*/*.parquet', hive_partitioning = true);
CREATE OR REPLACE VIEW sessions AS
    SELECT * FROM read_parquet('{lake}/sessions/*/*.parquet', hive_partitioning = true);
CREATE OR REPLACE VIEW guests AS SELECT * FROM read_parquet('{lake}/guests/*.parquet');
CREATE OR REPLACE VIEW orders AS SELECT * FROM read_parquet('{lake}/orders/*.parquet');
CREATE OR REPLACE VIEW order_items AS SELECT * FROM read_parquet('{lake}/order_items/*.parquet');
CREATE OR REPLACE VIEW experience_definitions AS
    SELECT * FROM read_parquet('{lake}/experience_definitions/*.parquet');

-- name: answer_key
-- Per flow and variant: exposures (TRACKING events), exposed guests, and guests who, after
-- their first exposure and within the flow's attribution window, placed an order holding the
-- flow's goal product type (every order, whatever its status now: a cancelled or refunded order
-- still converted when it was placed; a FAILED checkout is no order).
WITH variants AS (
    SELECT d.meta_ref AS flow_ref, d.friendly_id, d.goal_product_type, d.attribution_hours,
           v.ref AS variant_ref, v.name AS variant
    FROM experience_definitions d, unnest(d.variants) AS u(v)
), exposures AS (
    SELECT flow_execution_flow_ref AS flow_ref, flow_execution_flow_variant_ref AS variant_ref,
           meta_guest_ref AS guest_ref, meta_created_at AS ts
    FROM events WHERE type = 'TRACKING'
), firsts AS (
    SELECT flow_ref, guest_ref, arg_min(variant_ref, ts) AS variant_ref, min(ts) AS first_at
    FROM exposures GROUP BY flow_ref, guest_ref
), goal_orders AS (
    SELECT DISTINCT o.meta_guest_ref AS guest_ref, o.core_ordered_at AS ts,
           i.core_type AS product_type
    FROM orders o JOIN order_items i ON i.meta_order_ref = o.meta_ref
), converted AS (
    SELECT DISTINCT f.flow_ref, f.variant_ref, f.guest_ref
    FROM firsts f
    JOIN variants v ON v.variant_ref = f.variant_ref
    JOIN goal_orders g ON g.guest_ref = f.guest_ref
        AND g.product_type = v.goal_product_type
        AND g.ts >= f.first_at AND g.ts <= f.first_at + to_hours(v.attribution_hours)
)
SELECT v.friendly_id, v.variant,
       (SELECT count(*) FROM exposures e WHERE e.variant_ref = v.variant_ref) AS exposures,
       (SELECT count(*) FROM firsts f WHERE f.variant_ref = v.variant_ref) AS exposed_guests,
       (SELECT count(*) FROM converted c WHERE c.variant_ref = v.variant_ref) AS converted_guests
FROM variants v
ORDER BY v.friendly_id, v.variant;

-- name: summary
-- CDP's summary figures per variant: the sessions the variant ran in, the share of them that
-- bounced (a single page view and no other client event), and the share that converted.
WITH ran AS (
    SELECT DISTINCT meta_session_ref AS session_ref, flow_execution_flow_variant_ref AS variant_ref
    FROM events WHERE type = 'TRACKING'
), variants AS (
    SELECT d.friendly_id, v.ref AS variant_ref, v.name AS variant
    FROM experience_definitions d, unnest(d.variants) AS u(v)
)
SELECT v.friendly_id, v.variant,
       count(*) AS sessions,
       count(*) FILTER (WHERE s.bxt['numViews'] = '1'
           AND s.bxt['numEvents']::INT - s.bxt['numTrackings']::INT = 1) AS bounced,
       count(*) FILTER (WHERE s.bxt['cartType'] = 'CONVERTED') AS converted,
       round(bounced / count(*), 4) AS bounce_rate,
       round(converted / count(*), 4) AS conversion_rate
FROM variants v
JOIN ran r ON r.variant_ref = v.variant_ref
JOIN sessions s ON s.meta_ref = r.session_ref
GROUP BY v.friendly_id, v.variant
ORDER BY v.friendly_id, v.variant;

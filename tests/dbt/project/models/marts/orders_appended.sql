{{ config(materialized='incremental') }}
select order_id, {{ var('phase') }} as phase
from {{ ref('stg_orders') }}
where order_id % 10 = {{ var('phase') }}

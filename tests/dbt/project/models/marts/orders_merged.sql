{{ config(materialized='incremental', unique_key='order_id', incremental_strategy='merge') }}
select order_id, status, amount, current_date >= order_date as past
from {{ ref('orders') }}
where order_id <= {{ 50 if var('phase') == 1 else 100 }}
{% if is_incremental() %}
  and order_id > (select max(order_id) - 10 from {{ this }})
{% endif %}

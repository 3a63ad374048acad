{{ config(materialized='incremental', unique_key='order_id', incremental_strategy='delete+insert') }}
select order_id, customer_id, order_date, status, amount
from {{ ref('orders') }}
where order_id <= {{ 60 if var('phase') == 1 else 100 }}
{% if is_incremental() %}
  and (order_id > (select max(order_id) - 20 from {{ this }}) or status = 'returned')
{% endif %}

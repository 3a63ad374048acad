with source as (
    select * from {{ source('shop', 'raw_orders') }}
)
select
    id as order_id,
    user_id as customer_id,
    cast(order_date as date) as order_date,
    case
        when {{ var('phase') }} = 2 and id % 7 = 0 then 'returned'
        else status
    end as status
from source

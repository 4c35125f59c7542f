{{ alida.alida_staging('activities', [
    ['activity_id', 'varchar'],
    ['name', 'varchar'],
    ['activity_type', 'varchar'],
    ['status', 'varchar'],
    ['create_date', 'timestamp'],
    ['closed_on', 'timestamp'],
    ['last_update_date', 'timestamp'],
    ['stream_name', 'varchar'],
    ['in_scope', 'boolean'],
]) }}

{{ alida.alida_staging('member_profile_values', [
    ['member_id', 'varchar'],
    ['variable_id', 'varchar'],
    ['variable_name', 'varchar'],
    ['data_type', 'varchar'],
    ['values', 'json', 'exported_values'],
    ['value_ids', 'json', 'exported_value_ids'],
    ['effective_date', 'timestamp'],
    ['is_sensitive', 'boolean'],
    ['last_sync_date', 'timestamp'],
]) }}

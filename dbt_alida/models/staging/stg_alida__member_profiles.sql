{#- Every column the target made (one per member variable) but its _sdc_* metadata. -#}
{{ alida.alida_staging_all('member_profiles', [['member_id', 'varchar'], ['last_sync_date', 'timestamp']]) }}

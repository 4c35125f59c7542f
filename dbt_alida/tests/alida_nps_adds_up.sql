{#- promoters + passives + detractors = respondents, for every NPS question. -#}
select question_key
from {{ ref('nps') }}
where promoters + passives + detractors <> respondents

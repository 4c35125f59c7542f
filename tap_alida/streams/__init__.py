"""The tap's streams: thin, each reads from the run (``run.Run``), never from the tap.

* one ``ActivityResponsesStream`` per activity (survey), ``activity_answers``,
  ``activity_fields`` and ``activities`` (the listing): full table (``activities``);
* ``member_profiles`` (full table unless ``member_profiles_incremental``) and
  ``member_profile_values`` (incremental), from one member export (``members``).
"""

from tap_alida.streams.activities import (
    ActivitiesStream,
    ActivityAnswersStream,
    ActivityFieldsStream,
    ActivityResponsesStream,
)
from tap_alida.streams.members import (
    MemberProfilesStream,
    MemberProfileValuesStream,
    MemberStream,
    member_profiles_schema,
)

__all__ = [
    "ActivitiesStream",
    "ActivityAnswersStream",
    "ActivityFieldsStream",
    "ActivityResponsesStream",
    "MemberProfileValuesStream",
    "MemberProfilesStream",
    "MemberStream",
    "member_profiles_schema",
]

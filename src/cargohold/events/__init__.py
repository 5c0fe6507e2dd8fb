"""Events: what changed (and, where configured, what was read), for the audit log and the webhooks.

    model.py    Event and its actions: one record per change, with who asked and from where
    origin.py   who is asking: the request being served, or the admin CLI
    log.py      what they need of the database: the event log and its outbox
    recorder.py the one call a change makes (in its transaction), and the batched reads
    audit.py    reading the log back: its filter, an entry as readers show it

An event of a change is written in the same metadata transaction as the change
(:meth:`cargohold.metadata.store.EventQueries.add_event`): a change never
happens without its event, and a rolled-back change leaves none.
"""

from .model import Action, Event
from .origin import ADMIN_CLI, Origin, current_origin, origin_scope

__all__ = ["ADMIN_CLI", "Action", "Event", "Origin", "current_origin", "origin_scope"]

"""The events queue's wire format, in one place: what goes onto a broker and how it comes off.

- ``wire``: the message envelope kombu's Redis transport writes, and the sender that pushes it
  straight onto the queue's list.
- ``take``: the worker's bulk take and acknowledgement on a Redis broker.
- ``leases``: the kombu Redis transport whose consumers hold leases, so a lost worker's
  messages come back within seconds.

Nothing here imports the tasks: the task's name, serializer and limits come as arguments.
"""

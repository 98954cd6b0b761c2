"""The real pipelines built on the pipeline framework (agents/pipeline).

card import (one execution per listing that brings new files, key ``import:<card>:<event>``):
    copy:<file> for each new QR candidate  (waits for the detector's verified copy)
      └─ spawns probe:<file> and qr:<file>   (PyAV probe; QR decode in an executor)
         and group:<file> (after that probe and decode): starts the sessions already closed
    group  (depends on copy:*, ?probe:*, ?qr:*, ?group:*): orders the listing's files in
           recording order, groups what is in no session yet into jump sessions, records them
           and starts one jump execution each

jump (one execution per session, key ``jump:<session>``):
    copy:<file> for each footage file ──> spawns probe:<file>
    booking        (waits until the session has a booking: decoded QR or assigned by hand)
    phases         (with edit_jumps; depends on probe:*): the jump found in the clips' telemetry
                   and sound, its edit decision list; not sure -> the session needs review
    render         (depends on probe:*, booking and phases; runs on the Redis render queue)
    publish        (moves the finished video and poster into the output folder)
                   render and publish only when the booking bought the video (agents/deliverables)
    photos         (when it bought photos; depends on probe:*, booking, ?phases): the best stills,
                   watermarked, and a contact sheet
    deliver        (depends on booking, ?publish, ?photos): emails the passenger link once per
                   deliverable set, or writes it to the outbox (agents/jobs/deliver_step.py)

Copies themselves are requested by ingest as soon as a listing arrives (QR candidates first), so
footage copies run while QR clips are decoded; a ``copy`` step only waits for its file to land.
"""

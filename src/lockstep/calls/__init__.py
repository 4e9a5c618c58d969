"""Voice and video calls: the signalling core (docs/protocol/messaging.md §14).

Pure and sans-I/O like :mod:`lockstep.e2e`: :mod:`.signals` parses and writes the signals that travel
end to end as ``call`` envelopes, :mod:`.machine` is one call's state machine on one device (time is a
parameter), :mod:`.turn` derives coturn's time-limited TURN credentials. The media itself (WebRTC) is
the adapters' business: ``lockstep.client.calls`` (aiortc) and ``web/src/calls``.
"""

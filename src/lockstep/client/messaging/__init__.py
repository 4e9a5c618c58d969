"""The messenger's parts (docs/protocol/messaging.md), one job each, composed by
:class:`lockstep.client.messenger.Messenger`:

- :mod:`.device`: what every part shares (session, E2E store, the one way requests go out);
- :mod:`.keys`: publishing this device's key bundle and one-time keys;
- :mod:`.contacts`: looking accounts up and verifying their device lists and keys;
- :mod:`.outbox`: encrypting and sending (Olm fan-out, Megolm group sends, receipts);
- :mod:`.inbox`: fetching, opening and acting on what arrives, exactly once and in order;
- :mod:`.history`: the primary's history bundle for a new companion, and importing one;
- :mod:`.groups`: finding, creating and changing groups;
- :mod:`.media`: encrypted files in and out of the server;
- :mod:`.records`: what the parts hand to the application (:class:`Received`, :class:`Sent`, ...).
"""

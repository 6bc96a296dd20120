"""WebRTC: browsers and other WebRTC clients talk to a pipeline over a real peer connection.

``transport.webrtc.input`` / ``transport.webrtc.output`` (:mod:`.transport`) are the graph's
edge; :mod:`.host` answers the SDP offer on ``voxpipe serve``'s port and runs a graph per
peer; :mod:`.session` is one peer; :mod:`.sdp`, :mod:`.playout` and :mod:`.conceal` are the
sans-I/O parts (offer checks, the paced outbound stream, loss concealment). Needs the
``webrtc`` extra (aiortc). Usage and the signalling exchange: docs/webrtc.md.
"""

__all__: list[str] = []

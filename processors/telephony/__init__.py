"""Phone calls: Twilio, Telnyx and Plivo media streams as the edge of a graph.

* :mod:`.twilio`, :mod:`.telnyx`, :mod:`.plivo`: one sans-I/O serializer per provider,
  behind :class:`~.serializer.MediaStreamProtocol`;
* :class:`~.transport.PhoneInput` (``transport.phone.input``) and
  :class:`~.transport.PhoneOutput` (``transport.phone.output``): the caller's voice and
  ear in a graph; what the caller heard comes from the provider's echoed marks
  (:class:`~.playback.PlaybackLedger`);
* :mod:`.webhook`: the markup that answers a voice webhook, request signatures, stream tokens;
* :class:`~.host.TelephonyHost`: the webhooks and one graph per call in ``voxpipe serve``;
* :class:`~.frames.DtmfFrame`, :func:`~.call.current_call` and :mod:`.tools` for agents.

``docs/telephony.md`` says how to connect a real number.
"""

from .call import CALL, CallInfo, PhoneCall, current_call
from .frames import DtmfFrame
from .playback import PlaybackLedger
from .transport import PhoneInput, PhoneOutput

__all__ = ["CALL", "CallInfo", "DtmfFrame", "PhoneCall", "PhoneInput", "PhoneOutput", "PlaybackLedger", "current_call"]

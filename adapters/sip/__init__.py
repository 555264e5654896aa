"""Real telephony over SIP: the :class:`~movecar_core.ports.Telephony` port through the
baresip user agent (``baresip-core`` 1.0.0), with the greeting of 合同二(六) spoken by
espeak-ng and every call recorded (二(四)).

Start with :class:`SipTelephony` and :class:`SipConfig`; ``movecar sip test-call`` places
one call from the command line. The programs it needs: ``baresip``, ``espeak-ng``, ``sox``
(Debian: ``apt-get install baresip-core espeak-ng sox``).
"""

from __future__ import annotations

from movecar_adapters.sip.greeting import GreetingError, GreetingSynthesizer, speakable
from movecar_adapters.sip.recording import into_store
from movecar_adapters.sip.telephony import CallTiming, SipConfig, SipTelephony

#: The programs the adapter runs.
REQUIRED_TOOLS = ("baresip", "espeak-ng", "sox")

__all__ = [
    "REQUIRED_TOOLS",
    "CallTiming",
    "GreetingError",
    "GreetingSynthesizer",
    "SipConfig",
    "SipTelephony",
    "into_store",
    "speakable",
]

"""Instagram Direct, through the Meta app deskbridge already serves, per Meta's docs:

- webhooks: https://developers.facebook.com/docs/instagram-platform/webhooks/examples
  (``object: instagram``; ``messages``, ``message_reactions``, ``messaging_seen``,
  ``messaging_postbacks``, echoes, ``is_deleted`` unsends, story replies and mentions);
- sending: https://developers.facebook.com/docs/instagram-platform/instagram-api-with-instagram-login/messaging-api
  and https://developers.facebook.com/docs/messenger-platform/instagram/features/send-message
  (text UTF-8 up to 1000 bytes; image, audio, video and file attachments by URL; the
  24-hour window and the 7-day ``HUMAN_AGENT`` tag);
- profiles: the User Profile API (``GET /<IGSID>?fields=name,username``).

One Meta app posts every professional account it serves to one URL, signed with
``X-Hub-Signature-256`` (``InstagramReceiver``, routed by the account's id); each
account replies with its own token (``InstagramAdapter``). See docs/channels/instagram.md.
"""

from deskbridge.adapters.instagram.adapter import InstagramAdapter
from deskbridge.adapters.instagram.receiver import InstagramReceiver
from deskbridge.adapters.instagram.simulate import sample_message
from deskbridge.adapters.instagram.spec import SPEC

__all__ = ["SPEC", "InstagramAdapter", "InstagramReceiver", "sample_message"]

"""Names vulture reports as unused in ``src`` that are used, by a framework or by tests.

Read by ``python -m vulture src tests/vulture_whitelist.py --min-confidence 60`` (see
tests/test_guards.py), never imported. Vulture matches by name only, so each entry says
why that name is in use; an entry that is no longer true should go with its code.
"""

from typing import Any

_: Any = None

# pydantic: model settings and validators are read by pydantic's metaclass
_.model_config  # every BaseModel / BaseSettings
_._secret_shape  # config.accounts field_validator
_._token_shape  # config.accounts field_validator
_._one_token_source  # config.accounts model_validator
_._sender_shape  # config.accounts field_validator (SmsConfig, VonageSmsConfig)
_._a_private_key  # config.accounts field_validator (VonageSmsConfig)
_._e164  # config.accounts field_validator
_._notice_channels  # config.accounts model_validator
_._shared_shape  # config.accounts model_validator
_._one_per_type  # config.accounts model_validator
_._apps_exist_and_ids_are_unique  # config.accounts model_validator
_._one_account_per_support_address  # config.accounts model_validator
_._regex  # routing.config / routing.rules field_validator
_._load  # routing.responders model_validator (reads the knowledge base file)
_._long_enough  # routing.responders field_validator
_._small  # routing.responders field_validator
_._languages  # routing.config field_validator
_._coherent  # routing.config model_validator
_._codes  # routing.rules field_validator
_._zone  # routing.hours field_validator
_._weekly  # routing.hours field_validator
_._one_source  # store.keyring model_validator
_._one_active  # store.keyring model_validator

# httpx: an Auth subclass's flow is called by httpx for each request it authenticates
_.auth_flow  # adapters.sms.vonage.adapter._Bearer
_.extract_cookies  # http._NoCookies: httpx calls it on every response
_._cookies  # http.process_client: the store httpx's `cookies` property hands out

# pydantic fields of platform payloads (extra="ignore"): declared so pydantic validates
# their type, or read by name (getattr over a list of field names), not by attribute
_.edited_message  # telegram Update: parse._events reads it with getattr
_.image  # whatsapp message: parse reads the media field named by `type`
_.is_redelivery  # line deliveryContext: validated (a non-bool fails the parse)
_.delivery_context  # line webhook event: validated
_.deskbridge  # zendesk trigger body: the marker field that makes the shape

# fields of our own stored or served records (Redis hashes, admin API, exports), written
# by model_dump and read by operators, not by attribute in src
_.DISCARDED  # DeliveryState: the discard Lua script writes it, records read back to it
_.last_status  # Delivery
_.channel_error  # Delivery
_.replays  # Delivery
_.replayed_at  # Delivery
_.replayed_by  # Delivery
_.discarded_at  # Delivery
_.discarded_by  # Delivery
_.discard_reason  # Delivery
_.channel_user_id  # events: the sender's id on the channel
_.thread_title  # events: the email subject / chat title
_.confidence  # routing.enrich.LanguageGuess, asserted by tests
_.from_prior  # routing.enrich.LanguageGuess, asserted by tests
_.detected_source  # routing.translate.Translation, asserted by tests
_.attempt_log  # gateway.admin.models.DeliveryDetail: served by the admin API
_.parts_sent  # gateway.admin.models.DeliveryDetail: served by the admin API (issue 16)
_.last_attempt  # gateway.admin.models.LookupItem: served by the admin API
_.matched  # gateway.admin.models.ReplayResult: served by the admin API
_.confirmed  # gateway.admin.models.ForgetDesk / ForgetResult: served by the admin API
_.aof_rewrite  # gateway.admin.models.ForgetResult: served by the admin API
_.nothing_left  # gateway.admin.models.ForgetResult: served by the admin API
_.duplicate  # gateway.admin.models.ReingestedRaw / ReingestTotals: served by the admin API
_.issued_up_to  # gateway.admin.models.RevokeResult: served by the admin API (issue 18)
_.kept_until  # gateway.admin.models.RevokeResult: served by the admin API (issue 18)

# click: commands are registered by their decorators and called by the CLI
_.check_config
_.format_commands  # click.Group override: cli.main.LazyGroup lists commands without importing them
_.token_create
_.token_revoke
_.deliveries_list
_.deliveries_show
_.deliveries_replay
_.deliveries_discard
_.events_list
_.events_reingest
_.events_show
_.contacts_show
_.contacts_forget
_.contacts_export
_.contacts_link
_.contacts_unlink
_.contacts_suggestions
_.contacts_opt_out
_.generate  # deskbridge keys generate
_.rotate  # deskbridge keys rotate
_.digest_ids  # deskbridge keys digest-ids
_.convert  # click.ParamType.convert overrides

# standard-library and library callbacks, called by the framework that owns the object
_.connection_made  # asyncio protocols (sip.transport)
_.connection_lost  # asyncio protocols
_.data_received  # asyncio protocols
_.eof_received  # asyncio protocols (store.mux)
_.jobs_complete  # arq.Worker's counters, in its health record (pipeline.worker keeps them)
_.jobs_failed  # arq.Worker's counters
_.jobs_retried  # arq.Worker's counters
_.datagram_received  # asyncio datagram protocols (sip.transport, sip.client)
_.error_received  # asyncio datagram protocols
_.handle_RCPT  # aiosmtpd handler hooks (gateway.smtp)
_.handle_DATA  # aiosmtpd handler hooks
_.session  # aiosmtpd hook parameter, part of the hook's signature
_.line_length_limit  # aiosmtpd.smtp.SMTP reads it when it builds its stream reader (listeners.smtp)
_.handle_starttag  # html.parser.HTMLParser overrides (udesk.html)
_.handle_endtag  # html.parser.HTMLParser overrides
_.handle_data  # html.parser.HTMLParser overrides
_.attrs  # HTMLParser.handle_starttag parameter
_.format  # logging.Formatter.format override (logs)
_.connect_unix_socket  # httpcore.AsyncNetworkBackend interface (http)
_._pool  # httpx.AsyncHTTPTransport's pool, replaced by GuardedTransport (http)
_.exc_type  # __aexit__ signature (http.Fetcher)
_.tb  # __aexit__ signature
_.job_serializer  # arq.ArqRedis attributes the worker reads (pipeline.worker, Sentinel pool)
_.job_deserializer  # arq.ArqRedis attribute
_.allow_pick_jobs  # arq.Worker attributes its poll loop reads (pipeline.worker, graceful stop)
_.start_jobs  # arq.Worker's poll loop calls it (pipeline.worker._Worker overrides it)
_.max_burst_jobs  # arq.Worker attribute
_.redis_primary  # gateway.admin.models.HealthDetail field, serialized by pydantic

# instrumentation and calls that only tests make today
_.texts  # email webhooks Form.texts: tests read the decoded form fields
_.push_count  # line adapter: tests count LINE push messages sent (the paid quota)
_.check_token  # line adapter: readiness check of the token, tested, not yet wired
_.get_me  # telegram adapter: token check (getMe), tested, not yet wired
_.audit  # store.graph.audit: the merge audit stream, read by tests
_.flushes  # store.intake batching counter, asserted by tests
_.coalescer  # store.intake: tests reach the coalescer through it
_.most_in_flight  # store.intake.Coalescer: tests read how many batches overlapped
_.mark_waiting  # store.service: tests mark conversations waiting (filing does it with set_ticket)
_.writes  # store.mux.Multiplexer: tests read how many writes carried the requests
_._conn  # store.mux.Multiplexer: tests reach the connection in use

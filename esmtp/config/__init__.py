"""The esmtprc configuration: the model, the grammar, the file's search order and permission checks, identities,
durations, certificate fingerprints, and the msmtprc import.

The model's classes are re-exported here for plugins written before the package existed (``from esmtp.config import
Identity``); the core imports them from :mod:`esmtp.config.model`.
"""

from esmtp.config.model import Config as Config
from esmtp.config.model import Identity as Identity
from esmtp.config.model import KeywordSpec as KeywordSpec

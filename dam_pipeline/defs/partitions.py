"""One partition per bucket prefix; keys are reversible encodings (see ``keys.encode_prefix``)."""

import dagster as dg

image_prefixes = dg.DynamicPartitionsDefinition(name="image_prefixes")

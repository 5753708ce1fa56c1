"""An example Django project instrumented with ``snowplow_threaded.contrib.django``."""

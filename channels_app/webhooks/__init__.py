"""Provider webhook views: verify, parse into channels_app.events, record, publish."""

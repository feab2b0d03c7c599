"""A small, real OpenID Connect provider for the single sign-on tests, run in its own process.

django-oauth-toolkit with OIDC on (RS256, a key made for each run), a plain login page, and a
``groups`` claim from the provider user's Django groups (`validator`). `server.start_provider`
migrates its SQLite database in a temporary folder, registers the portal as a client, creates
the people, and serves it with gunicorn on a free 127.0.0.1 port. Nothing here is part of the
portal: it stands in for Okta, Entra ID, Keycloak or GitLab.
"""

"""``python -m tests.oidc_provider.prepare SPEC.json``: migrate the provider's database, register
the portal as its client and create its people (run by `server.start_provider`, before serving).

SPEC: {"client_id", "client_secret", "redirect_uri",
       "people": [{"username", "password", "email", "first_name", "groups": [...]}, ...]}
"""

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.oidc_provider.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth.models import Group, User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from oauth2_provider.models import Application  # noqa: E402


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    call_command("migrate", verbosity=0, interactive=False)
    Application.objects.create(
        name="Usage Portal",
        client_id=spec["client_id"],
        client_secret=spec["client_secret"],  # stored hashed, as a real provider would
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris=spec["redirect_uri"],
        algorithm=Application.RS256_ALGORITHM,
        skip_authorization=True,  # no consent screen: the company's own application
    )
    for person in spec["people"]:
        user = User.objects.create_user(
            person["username"],
            email=person["email"],
            password=person["password"],
            first_name=person.get("first_name", ""),
        )
        for name in person.get("groups", ()):
            user.groups.add(Group.objects.get_or_create(name=name)[0])


if __name__ == "__main__":
    main(sys.argv[1])

"""Who may change which account: the one home of the ownership rules.

Ops (``accounts.edit_any_account``) change every account; a CSM changes the accounts they own
(``Company.csm``) with the role's permission for that kind of change; a viewer changes nothing.
Pages, forms, the admin, the upload page and ``CompanyQuerySet.editable_by`` all ask here, so a
button is shown exactly when the write behind it will be allowed. Decided from the user's cached
permissions and the loaded account: no query.
"""

from __future__ import annotations

#: The permission an account's owner needs for each kind of change.
LABEL = "instances.label_instance"
SENTIMENT = "accounts.set_sentiment"
UPLOAD = "instances.upload_pings"
EDIT_ANY = "accounts.edit_any_account"
#: Role permissions that are not about one account.
MAP_LICENSES = "instances.map_license"
APPLY_NOW = "instances.apply_label_change_now"


def _active(user) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_active)


def can_edit_any(user) -> bool:
    """Ops: may change every account."""
    return _active(user) and user.has_perm(EDIT_ANY)


def owns_accounts(user) -> bool:
    """A CSM: owns accounts (may change their own) but not every account."""
    return _active(user) and user.has_perm(SENTIMENT) and not user.has_perm(EDIT_ANY)


def can_change(user, company, perm: str = LABEL) -> bool:
    """Whether ``user`` may make a ``perm`` kind of change (label, sentiment) on ``company``."""
    if not _active(user):
        return False
    if user.has_perm(EDIT_ANY):
        return True
    return company.csm_id is not None and company.csm_id == user.pk and user.has_perm(perm)


def can_label(user, company) -> bool:
    return can_change(user, company, LABEL)


def can_set_sentiment(user, company) -> bool:
    return can_change(user, company, SENTIMENT)


def can_edit(user, company) -> bool:
    """Whether the C360 offers ``user`` its edits on ``company``: labels and sentiment."""
    return can_label(user, company) and can_set_sentiment(user, company)


def can_upload_pings_for(user, company) -> bool:
    """Whether an uploaded ping may change ``company``'s data (its CSM with the upload role, or
    ops): the upload page is open to every CSM, the accounts it changes are not."""
    return can_change(user, company, UPLOAD)


def can_close_alert(user, company) -> bool:
    """Whether ``user`` may close a health-drop alert on ``company`` (its CSM, or ops)."""
    return can_change(user, company, SENTIMENT)


def can_map_licenses(user) -> bool:
    """Ops: may map a license to a subscription (Data quality, the admin)."""
    return _active(user) and user.has_perm(MAP_LICENSES)


def can_apply_now(user) -> bool:
    """Ops: may apply a pending label change before its refresh delay ends."""
    return _active(user) and user.has_perm(APPLY_NOW)

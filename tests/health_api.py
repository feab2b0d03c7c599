"""The health API's body, as product.md §6 lays it out (shared by the engine and HTTP tests)."""

#: Top-level keys, in order.
HEALTH_API_FIELDS = [
    "crm_account_id",
    "as_of",
    "scheme",
    "measures",
    "health_score_value",
    "adoption_count",
]
#: Keys of ``measures``, in order; each holds ``{"color", "value", "reason"}``.
HEALTH_API_MEASURES = [
    "license_utilization",
    "user_engagement",
    "scm",
    "ci",
    "cd",
    "devsecops",
    "overall_product_usage",
    "csm_sentiment",
    "overall_health",
]

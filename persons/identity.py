"""When two records are the same person: one definition for the CSV import's matching and for
the key under which provider answers are shared."""


def linkedin_identity(url: str) -> str:
    """A LinkedIn URL compared without letter case, scheme or trailing slash."""
    return url.strip().lower().rstrip("/").split("://")[-1]


def name_identity(
    *, first_name: str, last_name: str, company_domain: str, company_name: str
) -> str:
    """Full name at a company (its domain, else its name), ignoring letter case."""
    company = (company_domain or company_name).strip().lower()
    return f"{first_name.strip().lower()}|{last_name.strip().lower()}|{company}"

"""Users, sign-in sessions, access tokens and custom roles (issue 15)."""

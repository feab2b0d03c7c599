"""The signed-in person's own profile page: their time zone."""

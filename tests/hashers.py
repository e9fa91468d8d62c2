"""A password hasher for the test process only: Django's PBKDF2 with one iteration.

Every test that makes a user (pytest-django's ``admin_user``, the staff keys' owners) hashed
its password with Django's 1,000,000 PBKDF2 iterations, about 0.3 s each: tests/test_admin.py
and tests/test_keys.py together took 34.9 s that way, 10.7 s with one iteration. The algorithm
name and format stay Django's own ("pbkdf2_sha256$1$..."), and the count travels in the hash,
so a hub or worker subprocess with the default hashers verifies these passwords as it
verifies any other."""

from django.contrib.auth.hashers import PBKDF2PasswordHasher


class OneIterationPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    iterations = 1

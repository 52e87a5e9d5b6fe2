from __future__ import annotations

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Makes sure an administrator account exists. The first time, it prints the username and "
        "a generated password (ADMIN_PASSWORD sets it instead; ADMIN_USERNAME names it)."
    )

    def handle(self, *args, **options) -> None:
        User = get_user_model()
        username = os.environ.get("ADMIN_USERNAME", "admin")
        password = os.environ.get("ADMIN_PASSWORD", "")
        user = User.objects.filter(username=username).first()
        if user is not None:
            if password and not user.check_password(password):
                user.set_password(password)
                user.save(update_fields=["password"])
                self.stdout.write(f"Admin account '{username}': password set from ADMIN_PASSWORD.")
            else:
                self.stdout.write(f"Admin account '{username}' exists.")
            return
        generated = not password
        password = password or secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        self.stdout.write(self.style.SUCCESS(f"Created the admin account '{username}'."))
        if generated:
            self.stdout.write(
                self.style.WARNING(
                    f"  username: {username}\n  password: {password}\n"
                    "  (shown once: note it, or set ADMIN_PASSWORD and run make run again)"
                )
            )

class ReadOnlyAdminMixin:
    """For rows the hub writes itself (ledger, health, rollups, audit): operators read them,
    and act on them only through admin actions."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

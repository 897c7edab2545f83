"""The account pages: switcher, team (members and invitations), account deletion."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.access import current_account, get_account_for_user, set_current_account, user_role
from accounts.customers import delete_account
from accounts.forms import DeleteForm, InviteForm, MemberForm, RoleForm
from accounts.models import Account, Invitation, Membership, Role, User
from accounts.team import TeamError, change_role, invite, remove_member, revoke_invitation


@login_required
@require_POST
def switch_account(request: HttpRequest) -> HttpResponse:
    account = get_account_for_user(request.user, str(request.POST.get("account", "")))
    set_current_account(request, account)
    return redirect("/sites/")


@login_required
def team_current(request: HttpRequest) -> HttpResponse:
    account = current_account(request)
    if account is None:
        raise Http404("no account")
    return redirect("team", public_id=account.public_id)


@login_required
def team(request: HttpRequest, public_id: str) -> HttpResponse:
    account = get_account_for_user(request.user, public_id)
    role = user_role(request.user, account)
    form = InviteForm()
    if request.method == "POST":
        account = get_account_for_user(request.user, public_id, role=Role.OWNER)
        form = InviteForm(request.POST)
        if form.is_valid():
            try:
                invite(account, form.cleaned_data["email"], Role(form.cleaned_data["role"]), request.user)  # type: ignore[arg-type]
            except TeamError as error:
                form.add_error("email", str(error))
            else:
                messages.success(request, f"Invitation sent to {form.cleaned_data['email']}. It is valid for 48 hours.")
                return redirect("team", public_id=account.public_id)
    members = Membership.objects.filter(account=account).select_related("user").order_by("user__email")
    invitations = Invitation.objects.filter(account=account, accepted_at__isnull=True).order_by("email")
    context = {
        "account": account,
        "members": members,
        "invitations": invitations,
        "form": form,
        "role": role,
        "is_owner": role == Role.OWNER,
        "roles": Role.choices,
    }
    return render(request, "accounts/team.html", context)


def _member(account: Account, email: str) -> User:
    user = User.objects.filter(email__iexact=email, memberships__account=account).first()
    if user is None:
        raise Http404("not a member")
    return user


@login_required
@require_POST
def team_role(request: HttpRequest, public_id: str) -> HttpResponse:
    account = get_account_for_user(request.user, public_id, role=Role.OWNER)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a member and a role.")
        return redirect("team", public_id=account.public_id)
    member = _member(account, form.cleaned_data["email"])
    try:
        change_role(account, member, Role(form.cleaned_data["role"]))
    except TeamError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"{member.email} is now {Role(form.cleaned_data['role']).label.lower()}.")
    return redirect("team", public_id=account.public_id)


@login_required
@require_POST
def team_remove(request: HttpRequest, public_id: str) -> HttpResponse:
    """Owners remove anyone; every member may remove themself (leave)."""
    account = get_account_for_user(request.user, public_id)
    form = MemberForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a member.")
        return redirect("team", public_id=account.public_id)
    leaving = form.cleaned_data["email"].lower() == request.user.email.lower()  # type: ignore[union-attr]
    if not leaving:
        get_account_for_user(request.user, public_id, role=Role.OWNER)
    member = _member(account, form.cleaned_data["email"])
    try:
        remove_member(account, member)
    except TeamError as error:
        messages.error(request, str(error))
        return redirect("team", public_id=account.public_id)
    if leaving:
        messages.success(request, f"You left {account.name}.")
        return redirect("/")
    messages.success(request, f"{member.email} was removed.")
    return redirect("team", public_id=account.public_id)


@login_required
@require_POST
def invitation_revoke(request: HttpRequest, public_id: str) -> HttpResponse:
    account = get_account_for_user(request.user, public_id, role=Role.OWNER)
    form = MemberForm(request.POST)
    if form.is_valid() and revoke_invitation(account, form.cleaned_data["email"]):
        messages.success(request, f"The invitation to {form.cleaned_data['email']} was withdrawn.")
    return redirect("team", public_id=account.public_id)


@login_required
def account_delete(request: HttpRequest, public_id: str) -> HttpResponse:
    account = get_account_for_user(request.user, public_id, role=Role.OWNER)
    form = DeleteForm(request.POST or None, expected=account.name)
    if request.method == "POST" and form.is_valid():
        name = account.name
        delete_account(account)
        messages.success(request, f"The account {name} and all its sites were deleted.")
        return redirect("/")
    return render(request, "accounts/account_delete.html", {"account": account, "form": form})

# install.mk — `make install`, `make uninstall` and `make systemd-check`
# (included by the Makefile).
#
#   make install   [PREFIX=/usr/local] [DESTDIR=] [SYSCONFDIR=/etc] ...
#   make uninstall (same variables as install)
#
# PREFIX, BINDIR, SYSCONFDIR, DOCDIR, SYSTEMD_UNIT_DIR, SYSUSERS_DIR,
# TMPFILES_DIR and POSTINSTALL can be set on the command line.
#
# The units are generated from systemd/*.in with the installed paths
# substituted, so ExecStart= always names the binary install put there.
# An existing $(SYSCONFDIR)/pglease/pglease.ini is never overwritten, and
# uninstall removes it only while it is byte for byte the installed sample.

PREFIX           ?= /usr/local
BINDIR           ?= $(PREFIX)/bin
SYSCONFDIR       ?= /etc
DOCDIR           ?= $(PREFIX)/share/doc/pglease
SYSTEMD_UNIT_DIR ?= $(PREFIX)/lib/systemd/system
SYSUSERS_DIR     ?= $(PREFIX)/lib/sysusers.d
TMPFILES_DIR     ?= $(PREFIX)/lib/tmpfiles.d
INSTALL          ?= install

CONF_DIR    := $(DESTDIR)$(SYSCONFDIR)/pglease
CONF_FILE   := $(CONF_DIR)/pglease.ini
GEN_DIR     := build/install
# On the live system (no DESTDIR), as root, install also creates the user
# (systemd-sysusers), /run/pglease (systemd-tmpfiles) and reloads systemd;
# POSTINSTALL=no skips that.
POSTINSTALL     ?= yes
LIVE_ROOT    = [ "$(POSTINSTALL)" = yes ] && [ -z "$(DESTDIR)" ] && [ "$$(id -u)" -eq 0 ]

SUBST = sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
	    -e 's|@DOCDIR@|$(DOCDIR)|g'

.PHONY: install uninstall systemd-check FORCE

# The sample, pointed at the socket directory the units use. Every key keeps
# its documentation in conf/pglease.ini; only this one line differs.
$(GEN_DIR)/pglease.ini: conf/pglease.ini systemd/install.mk
	@mkdir -p $(dir $@)
	sed -e 's|^unix_socket_dir = .*|; Installed for pglease.service and pglease.socket (the default is /tmp).\nunix_socket_dir = /run/pglease|' $< >$@.tmp
	@grep -qx 'unix_socket_dir = /run/pglease' $@.tmp || { echo "install.mk: no unix_socket_dir line in $<" >&2; exit 1; }
	mv $@.tmp $@

# Regenerated on every install: the paths come from the command line.
$(GEN_DIR)/%: systemd/%.in FORCE
	@mkdir -p $(dir $@)
	$(SUBST) $< >$@

install: pglease $(GEN_DIR)/pglease.ini $(GEN_DIR)/pglease.service $(GEN_DIR)/pglease.socket $(GEN_DIR)/pglease.tmpfiles
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SYSTEMD_UNIT_DIR) $(DESTDIR)$(SYSUSERS_DIR) \
		$(DESTDIR)$(TMPFILES_DIR) $(DESTDIR)$(DOCDIR)
	$(INSTALL) -m 0755 pglease $(DESTDIR)$(BINDIR)/pglease
	$(INSTALL) -m 0644 $(GEN_DIR)/pglease.service $(GEN_DIR)/pglease.socket $(DESTDIR)$(SYSTEMD_UNIT_DIR)/
	$(INSTALL) -m 0644 systemd/pglease.sysusers $(DESTDIR)$(SYSUSERS_DIR)/pglease.conf
	$(INSTALL) -m 0644 $(GEN_DIR)/pglease.tmpfiles $(DESTDIR)$(TMPFILES_DIR)/pglease.conf
	$(INSTALL) -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md
	@if $(LIVE_ROOT) && command -v systemd-sysusers >/dev/null; then \
		echo "systemd-sysusers $(SYSUSERS_DIR)/pglease.conf"; systemd-sysusers $(SYSUSERS_DIR)/pglease.conf; fi
	$(INSTALL) -d -m 0750 $(CONF_DIR)
	@if [ -e $(CONF_FILE) ]; then echo "install: kept the existing $(CONF_FILE)"; \
	else echo "$(INSTALL) -m 0640 $(GEN_DIR)/pglease.ini $(CONF_FILE)"; \
		$(INSTALL) -m 0640 $(GEN_DIR)/pglease.ini $(CONF_FILE); fi
	@if $(LIVE_ROOT) && getent group pglease >/dev/null; then \
		chgrp pglease $(CONF_DIR) $(CONF_FILE); fi
	@if $(LIVE_ROOT) && command -v systemd-tmpfiles >/dev/null; then \
		echo "systemd-tmpfiles --create $(TMPFILES_DIR)/pglease.conf"; \
		systemd-tmpfiles --create $(TMPFILES_DIR)/pglease.conf; fi
	@if $(LIVE_ROOT) && [ -d /run/systemd/system ]; then echo "systemctl daemon-reload"; systemctl daemon-reload; \
		echo "install: start pglease with: systemctl enable --now pglease.socket pglease.service"; fi

uninstall: $(GEN_DIR)/pglease.ini
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ] && \
	    systemctl -q is-active pglease.service pglease.socket 2>/dev/null; then \
		echo "uninstall: pglease is still running; first: systemctl disable --now pglease.socket pglease.service" >&2; \
		exit 1; fi
	rm -f $(DESTDIR)$(BINDIR)/pglease \
		$(DESTDIR)$(SYSTEMD_UNIT_DIR)/pglease.service $(DESTDIR)$(SYSTEMD_UNIT_DIR)/pglease.socket \
		$(DESTDIR)$(SYSUSERS_DIR)/pglease.conf $(DESTDIR)$(TMPFILES_DIR)/pglease.conf \
		$(DESTDIR)$(DOCDIR)/README.md
	rmdir $(DESTDIR)$(DOCDIR) 2>/dev/null || true
	@if [ ! -e $(CONF_FILE) ]; then :; \
	elif cmp -s $(GEN_DIR)/pglease.ini $(CONF_FILE); then echo "rm -f $(CONF_FILE)"; rm -f $(CONF_FILE); \
	else echo "uninstall: kept $(CONF_FILE): it differs from the installed sample"; fi
	rmdir $(CONF_DIR) 2>/dev/null || true
	@if $(LIVE_ROOT) && [ -d /run/systemd/system ]; then echo "systemctl daemon-reload"; systemctl daemon-reload; fi

# Unit files, their security score, install and uninstall, and pglease under
# the unit's system call filter (tests/systemd).
systemd-check: pglease
	PGLEASE_BIN=$(CURDIR)/pglease $(PY) -m pytest -q tests/systemd

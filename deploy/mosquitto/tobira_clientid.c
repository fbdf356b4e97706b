/*
 * tobira_clientid: a mosquitto 2.x plugin that binds each MQTT client ID to
 * the client's TLS certificate (issue 12, item 2; docs/SECURITY.md).
 *
 * For every CONNECT it reads the Common Name of the client certificate,
 * makes it the client's user name (what use_identity_as_username would do;
 * the ACL's %u), and refuses the connection unless the client ID belongs to
 * that CN:
 *   - CN "tobira-hq" (HQ and its admin CLI): "tobira-hq", or "tobira-hq-"
 *     followed by anything without a "/";
 *   - CN "{site}/{device}": "{site}/{device}", or "{site}/{device}/"
 *     followed by anything (the link, "/release", "/doctor");
 *   - any other CN, a CN with "+", "#", NUL or more than one "/", or more
 *     than one CN: refused.
 * Device IDs always hold a "/" and HQ's never do; two devices' IDs differ
 * in their first two "/"-separated parts. So no certificate can take
 * another identity's client ID, which would disconnect that client.
 *
 * It also refuses a shared subscription ("$share/{group}/...") to every
 * user but "tobira-hq". HQ's replicas share the devices' messages in such
 * a group; mosquitto 2.0's acl_file checks no subscription (only each
 * delivery), and hands a group's message to one member before checking
 * that member's read access: a device that joined HQ's group would have
 * a share of every device's messages dropped.
 *
 * Why a plugin: on mosquitto 2.0, use_identity_as_username skips every
 * authentication plugin, so the dynamic-security plugin's per-client
 * "clientid" is never checked for certificate users; use_username_as_clientid
 * allows a single connection per certificate, while HQ's admin CLI and a
 * device's release agent connect next to HQ and the link.
 *
 * Build (Debian: apt install gcc mosquitto-dev libmosquitto-dev libssl-dev):
 *   make -C deploy/mosquitto
 * mosquitto.conf loads it with "plugin /usr/lib/tobira/tobira_clientid.so"
 * and must NOT set use_identity_as_username (mosquitto would then not call
 * the plugin).
 */
#include <string.h>

#include <openssl/x509.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#define HQ_CN "tobira-hq"

static mosquitto_plugin_id_t *plugin_id;

/* cert_cn copies the certificate's only Common Name into cn (size n) and
 * returns 0, or -1 if there is none, more than one, or it does not fit or
 * holds a NUL. */
static int cert_cn(X509 *cert, char *cn, size_t n)
{
	X509_NAME *name = X509_get_subject_name(cert);
	int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
	if(i < 0 || X509_NAME_get_index_by_NID(name, NID_commonName, i) >= 0){
		return -1;
	}
	ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
	int len = ASN1_STRING_length(s);
	const unsigned char *d = ASN1_STRING_get0_data(s);
	if(len <= 0 || (size_t)len >= n || memchr(d, 0, (size_t)len) != NULL){
		return -1;
	}
	memcpy(cn, d, (size_t)len);
	cn[len] = '\0';
	return 0;
}

/* device_cn reports whether cn is "{site}/{device}": one "/" with a
 * non-empty name on each side, no MQTT wildcard. */
static int device_cn(const char *cn)
{
	const char *slash = strchr(cn, '/');
	return slash != NULL && slash != cn && slash[1] != '\0' && strchr(slash + 1, '/') == NULL &&
		strpbrk(cn, "+#") == NULL;
}

/* id_allowed reports whether a client with certificate CN cn may use
 * client ID id. */
static int id_allowed(const char *cn, const char *id)
{
	size_t n = strlen(cn);
	if(strcmp(cn, HQ_CN) == 0){
		return strcmp(id, HQ_CN) == 0 ||
			(strncmp(id, HQ_CN "-", n + 1) == 0 && strchr(id, '/') == NULL);
	}
	if(!device_cn(cn) || strncmp(id, cn, n) != 0){
		return 0;
	}
	return id[n] == '\0' || id[n] == '/';
}

static int on_basic_auth(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_basic_auth *ed = event_data;
	const char *id = mosquitto_client_id(ed->client);
	char cn[256];
	(void)event;
	(void)userdata;

	X509 *cert = mosquitto_client_certificate(ed->client);
	if(cert == NULL){
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "tobira_clientid: refused %s: no client certificate", id ? id : "?");
		return MOSQ_ERR_AUTH;
	}
	int bad = cert_cn(cert, cn, sizeof cn);
	X509_free(cert);
	if(bad){
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "tobira_clientid: refused %s: certificate has not exactly one usable CN", id ? id : "?");
		return MOSQ_ERR_AUTH;
	}
	if(id == NULL || !id_allowed(cn, id)){
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "tobira_clientid: refused client ID %s for certificate CN %s", id ? id : "?", cn);
		return MOSQ_ERR_AUTH;
	}
	if(mosquitto_set_username(ed->client, cn) != MOSQ_ERR_SUCCESS){
		return MOSQ_ERR_AUTH;
	}
	return MOSQ_ERR_SUCCESS;
}

/* foreign_group reports whether topic is a group topic of a site,
 * "tobira/v1/{site}/groups/...", that device CN cn ("{site}/{device}")
 * does not belong to. */
static int foreign_group(const char *cn, const char *topic)
{
	static const char prefix[] = "tobira/v1/";
	size_t n = sizeof prefix - 1;
	if(strncmp(topic, prefix, n) != 0){
		return 0;
	}
	const char *site = topic + n;
	const char *end = strchr(site, '/');
	if(end == NULL || strncmp(end, "/groups/", 8) != 0){
		return 0;
	}
	size_t len = (size_t)(end - site);
	return !(strncmp(cn, site, len) == 0 && cn[len] == '/');
}

/* on_acl_check refuses a "$share/" subscription of any user but HQ, and
 * the delivery of a site's group topics (snapshot and release offers and
 * chunks for the devices of one site) to a device of another site; it
 * leaves every other check to the ACL file, whose %u cannot be split into
 * site and device. */
static int on_acl_check(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_acl_check *ed = event_data;
	(void)event;
	(void)userdata;

	if(ed->topic == NULL){
		return MOSQ_ERR_PLUGIN_DEFER;
	}
	const char *user = mosquitto_client_username(ed->client);
	int hq = user != NULL && strcmp(user, HQ_CN) == 0;
	if(ed->access == MOSQ_ACL_READ && !hq && foreign_group(user ? user : "", ed->topic)){
		return MOSQ_ERR_ACL_DENIED;
	}
	if(ed->access != MOSQ_ACL_SUBSCRIBE || strncmp(ed->topic, "$share/", 7) != 0){
		return MOSQ_ERR_PLUGIN_DEFER;
	}
	if(hq){
		return MOSQ_ERR_PLUGIN_DEFER;
	}
	mosquitto_log_printf(MOSQ_LOG_NOTICE, "tobira_clientid: refused shared subscription %s of %s", ed->topic, user ? user : "?");
	return MOSQ_ERR_ACL_DENIED;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	(void)supported_version_count;
	(void)supported_versions;
	return 5;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata, struct mosquitto_opt *opts, int opt_count)
{
	(void)userdata;
	(void)opts;
	(void)opt_count;
	plugin_id = identifier;
	int rc = mosquitto_callback_register(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, NULL);
	if(rc != MOSQ_ERR_SUCCESS){
		return rc;
	}
	return mosquitto_callback_register(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, NULL);
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *opts, int opt_count)
{
	(void)userdata;
	(void)opts;
	(void)opt_count;
	int rc = mosquitto_callback_unregister(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
	int rc2 = mosquitto_callback_unregister(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
	return rc != MOSQ_ERR_SUCCESS ? rc : rc2;
}

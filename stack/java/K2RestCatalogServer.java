/*
 * Starts Apache Iceberg's REST catalog fixture bound to one host address.
 *
 * Iceberg's own RESTCatalogServer (iceberg-open-api test fixtures) always listens on every interface;
 * the K2 local stack must listen on loopback only. This launcher builds the same backend catalog from
 * the same CATALOG_* environment variables and serves it through the fixture's own adapter and
 * servlet, on the host given by the catalog property rest.host (CATALOG_REST_HOST, default 127.0.0.1).
 * It sits in the fixture's package because the fixture's adapter classes are package-private.
 */
package org.apache.iceberg.rest;

import java.util.HashMap;
import java.util.Map;
import org.apache.hadoop.conf.Configuration;
import org.apache.iceberg.CatalogProperties;
import org.apache.iceberg.CatalogUtil;
import org.apache.iceberg.catalog.Catalog;
import org.apache.iceberg.jdbc.JdbcCatalog;
import org.apache.iceberg.util.PropertyUtil;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;
import org.eclipse.jetty.server.handler.gzip.GzipHandler;
import org.eclipse.jetty.servlet.ServletContextHandler;
import org.eclipse.jetty.servlet.ServletHolder;

public final class K2RestCatalogServer {
  private K2RestCatalogServer() {}

  public static void main(String[] args) throws Exception {
    Map<String, String> properties = new HashMap<>(RCKUtils.environmentCatalogConfig());
    properties.putIfAbsent(CatalogProperties.CATALOG_IMPL, JdbcCatalog.class.getName());
    properties.putIfAbsent("jdbc.schema-version", "V1");
    if (!properties.containsKey(CatalogProperties.URI)
        || !properties.containsKey(CatalogProperties.WAREHOUSE_LOCATION)) {
      // A catalog that forgets everything on restart is never what the K2 stack wants.
      throw new IllegalArgumentException("CATALOG_URI and CATALOG_WAREHOUSE must both be set");
    }
    String host = properties.getOrDefault("rest.host", "127.0.0.1");
    int port = PropertyUtil.propertyAsInt(properties, RESTCatalogServer.REST_PORT, 8181);

    Catalog catalog =
        CatalogUtil.buildIcebergCatalog("rest_backend", properties, new Configuration());
    RESTCatalogAdapter adapter =
        new RESTServerCatalogAdapter(new RESTCatalogServer.CatalogContext(catalog, properties));

    ServletContextHandler context = new ServletContextHandler(ServletContextHandler.NO_SESSIONS);
    context.addServlet(new ServletHolder(new RESTCatalogServlet(adapter)), "/*");
    context.insertHandler(new GzipHandler());

    Server server = new Server();
    ServerConnector connector = new ServerConnector(server);
    connector.setHost(host);
    connector.setPort(port);
    server.addConnector(connector);
    server.setHandler(context);
    server.setStopAtShutdown(true);
    server.start();
    System.out.println("K2 Iceberg REST catalog listening on http://" + host + ":" + port);
    server.join();
  }
}

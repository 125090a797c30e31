// Healthcheck for the hapiproject/hapi container, which is distroless (no shell, curl or wget).
// docker-compose.yml mounts this file read-only and runs it with the image's own JVM in
// source-file mode: `java /healthcheck/HealthCheck.java`. Exit 0 only when the FHIR endpoint
// answers /metadata with a CapabilityStatement, i.e. HAPI can take the fixtures.
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;

public class HealthCheck {
    public static void main(String[] args) {
        String url = args.length > 0 ? args[0] : "http://localhost:8080/fhir/metadata";
        try {
            HttpClient client = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
            HttpRequest request = HttpRequest.newBuilder(URI.create(url))
                    .header("Accept", "application/fhir+json")
                    .timeout(Duration.ofSeconds(10))
                    .build();
            HttpResponse<String> response = client.send(request, HttpResponse.BodyHandlers.ofString());
            boolean ok = response.statusCode() == 200 && response.body().contains("\"CapabilityStatement\"");
            if (!ok) {
                System.err.println("HAPI not ready: HTTP " + response.statusCode());
            }
            System.exit(ok ? 0 : 1);
        } catch (Exception e) {
            System.err.println("HAPI not ready: " + e);
            System.exit(1);
        }
    }
}

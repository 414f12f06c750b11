import com.android.apksig.ApkSigner;
import com.android.apksig.ApkVerifier;
import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.Enumeration;
import java.util.List;
import java.util.stream.Stream;
import java.util.zip.CRC32;
import java.util.zip.ZipEntry;
import java.util.zip.ZipFile;
import java.util.zip.ZipOutputStream;

/**
 * The last steps of the demo app's Maven build, on apksig (the library behind the SDK's apksigner):
 * {@code build RES_AP DEX_DIR JNI_DIR KEYSTORE OUT} packs aapt2's resource APK, D8's classes*.dex and, when
 * JNI_DIR exists, an AAR's {@code jni/ABI/*.so} as {@code lib/ABI/*.so} (stored) into an unsigned APK, then signs
 * it (v1 + v2 + v3, debug key from a PKCS12 keystore, password "android"); apksig aligns stored entries on 4
 * bytes and native libraries on the page size while signing, which is zipalign's job in the SDK's flow.
 * {@code verify APK} prints apksig's verdict (schemes, errors) and exits 1 when the APK does not verify.
 * Run with the JDK's single-file launcher: {@code java -cp apksig.jar ApkTool.java verify app.apk}.
 */
public final class ApkTool {
    private ApkTool() {
    }

    public static void main(String[] args) throws Exception {
        if (args.length == 6 && args[0].equals("build")) {
            build(Path.of(args[1]), Path.of(args[2]), Path.of(args[3]), Path.of(args[4]), Path.of(args[5]));
        } else if (args.length == 2 && args[0].equals("verify")) {
            System.exit(verify(new File(args[1])) ? 0 : 1);
        } else {
            System.err.println("usage: ApkTool build RES_AP DEX_DIR JNI_DIR KEYSTORE OUT | ApkTool verify APK");
            System.exit(2);
        }
    }

    private static void build(Path res, Path dex, Path jni, Path keystore, Path out) throws Exception {
        Path unsigned = out.resolveSibling(out.getFileName() + ".unsigned");
        try (ZipOutputStream zip = new ZipOutputStream(Files.newOutputStream(unsigned))) {
            copyEntries(res, zip);
            for (Path d : sorted(dex, ".dex")) {
                add(zip, d.getFileName().toString(), Files.readAllBytes(d), false);
            }
            if (Files.isDirectory(jni)) {
                for (Path so : sorted(jni, ".so")) {
                    add(zip, "lib/" + jni.relativize(so).toString().replace(File.separatorChar, '/'),
                            Files.readAllBytes(so), true);
                }
            }
        }
        Path tmp = out.resolveSibling(out.getFileName() + ".tmp");
        sign(unsigned.toFile(), tmp.toFile(), keystore.toFile());
        Files.delete(unsigned);
        Files.move(tmp, out, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        if (!verify(out.toFile())) {
            throw new IllegalStateException(out + ": the signed APK does not verify");
        }
    }

    private static List<Path> sorted(Path dir, String suffix) throws IOException {
        if (!Files.isDirectory(dir)) {
            return List.of();
        }
        try (Stream<Path> s = Files.walk(dir)) {
            return s.filter(p -> p.toString().endsWith(suffix)).sorted().toList();
        }
    }

    /** Every entry of aapt2's output as it is (stored entries stay stored: assets listed with -0, resources.arsc). */
    private static void copyEntries(Path res, ZipOutputStream zip) throws IOException {
        try (ZipFile in = new ZipFile(res.toFile())) {
            for (Enumeration<? extends ZipEntry> e = in.entries(); e.hasMoreElements(); ) {
                ZipEntry src = e.nextElement();
                try (InputStream is = in.getInputStream(src)) {
                    add(zip, src.getName(), is.readAllBytes(), src.getMethod() == ZipEntry.STORED);
                }
            }
        }
    }

    private static void add(ZipOutputStream zip, String name, byte[] data, boolean stored) throws IOException {
        ZipEntry e = new ZipEntry(name);
        e.setTime(315532800000L + 86400000L); // fixed time: the same inputs give the same unsigned APK
        if (stored) {
            CRC32 crc = new CRC32();
            crc.update(data);
            e.setMethod(ZipEntry.STORED);
            e.setSize(data.length);
            e.setCompressedSize(data.length);
            e.setCrc(crc.getValue());
        }
        zip.putNextEntry(e);
        zip.write(data);
        zip.closeEntry();
    }

    private static void sign(File in, File out, File keystore) throws Exception {
        char[] pass = "android".toCharArray();
        KeyStore ks = KeyStore.getInstance("PKCS12");
        try (InputStream is = new FileInputStream(keystore)) {
            ks.load(is, pass);
        }
        String alias = ks.aliases().nextElement();
        PrivateKey key = (PrivateKey) ks.getKey(alias, pass);
        List<X509Certificate> chain = new ArrayList<>();
        chain.add((X509Certificate) ks.getCertificate(alias));
        ApkSigner.SignerConfig signer = new ApkSigner.SignerConfig.Builder("CERT", key, chain).build();
        new ApkSigner.Builder(List.of(signer))
                .setInputApk(in)
                .setOutputApk(out)
                .setV1SigningEnabled(true)
                .setV2SigningEnabled(true)
                .setV3SigningEnabled(true)
                .setDebuggableApkPermitted(true)
                .setAlignmentPreserved(false)
                .build()
                .sign();
    }

    private static boolean verify(File apk) throws Exception {
        ApkVerifier.Result r = new ApkVerifier.Builder(apk).build().verify();
        System.out.println("apksig verify " + apk.getName() + ": verified=" + r.isVerified()
                + " v1=" + r.isVerifiedUsingV1Scheme() + " v2=" + r.isVerifiedUsingV2Scheme()
                + " v3=" + r.isVerifiedUsingV3Scheme() + " signers=" + r.getSignerCertificates().size());
        r.getErrors().forEach(e -> System.out.println("error: " + e));
        return r.isVerified();
    }
}
